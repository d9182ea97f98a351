package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func init() {
	commands["version"] = command{summary: "print this program's version, its commit and the Go version it was built with", run: runVersion}
}

// readBuildInfo is runtime/debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

// buildVersion is what version prints.
type buildVersion struct {
	Module   string `json:"module"`
	Version  string `json:"version"`            // the module version: a tag, a pseudo-version, or (devel) for a build from a checkout
	Revision string `json:"revision,omitempty"` // the VCS commit a checkout build was made from
	Time     string `json:"time,omitempty"`     // the commit's time
	Modified bool   `json:"modified,omitempty"` // the checkout had uncommitted changes
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func currentVersion() buildVersion {
	v := buildVersion{Version: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := readBuildInfo()
	if !ok {
		return v
	}
	v.Module, v.Version = bi.Main.Path, bi.Main.Version
	if v.Version == "" {
		v.Version = "unknown"
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (v buildVersion) String() string {
	s := "consul-upgrade " + v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (commit " + rev
		if v.Time != "" {
			s += " of " + v.Time
		}
		if v.Modified {
			s += ", with uncommitted changes"
		}
		s += ")"
	}
	return s + "\nbuilt with " + v.Go + " for " + v.Platform
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := addOutputFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: consul-upgrade version [-output text|json]\n\nPrints the module version (a release tag, a pseudo-version, or (devel) for a build\nfrom a checkout, with its commit), and the Go version it was built with.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if err := checkOutput(*output); err != nil {
		return fail(stderr, "version", err)
	}
	v := currentVersion()
	if *output == "json" {
		data, _ := json.Marshal(v)
		stdout.Write(append(data, '\n'))
		return exitOK
	}
	fmt.Fprintln(stdout, v)
	return exitOK
}
