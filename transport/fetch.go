package transport

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Fetch says where a host downloads the consul binary for one version by
// itself (an internal mirror, an artifact store) and the SHA-256 the
// download must have. A transport given a Mirror sends the host only
// commands: the host fetches the binary, checks its checksum and installs it
// only when it matches, instead of the orchestrator streaming the binary to
// every host (one 125 MB copy per client does not scale to a fleet).
type Fetch struct {
	URL    string // http:// or https://
	SHA256 string // hex; from a trusted source (SHA256SUMS, a pinned table), never from the download itself
}

// Validate checks that f is usable before anything is sent to a host: an
// absolute http(s) URL without control characters or whitespace, and a
// SHA-256 of 64 hex digits. Its error names the value and the fix.
func (f Fetch) Validate() error {
	var problems []string
	u, err := url.Parse(f.URL)
	switch {
	case f.URL == "":
		problems = append(problems, "URL is empty; give the mirror's http(s) URL of the consul binary")
	case strings.IndexFunc(f.URL, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		problems = append(problems, fmt.Sprintf("URL %q holds whitespace or a control character; percent-encode it", f.URL))
	case err != nil:
		problems = append(problems, fmt.Sprintf("URL %q does not parse (%v); give an absolute http(s) URL", f.URL, err))
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		problems = append(problems, fmt.Sprintf("URL %q is not an absolute http:// or https:// URL; the host downloads it with curl or wget", f.URL))
	}
	if !sha256Hex.MatchString(f.SHA256) {
		problems = append(problems, fmt.Sprintf("SHA256 %q is not 64 lower-case hex digits; give the release's checksum (SHA256SUMS)", f.SHA256))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: fetch: %s", ErrArtifact, strings.Join(problems, "; "))
	}
	return nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Mirror tells a transport where each version's binary can be fetched from.
// It is called once per swap, before the host is touched; an error refuses
// the swap.
type Mirror func(ctx context.Context, version string) (Fetch, error)

// Mirrors returns a Mirror over a fixed table (version -> Fetch), the
// common case of a pinned list of releases on an internal mirror. A version
// not in the table is an error naming the versions it has.
func Mirrors(table map[string]Fetch) Mirror {
	return func(ctx context.Context, version string) (Fetch, error) {
		f, ok := table[version]
		if !ok {
			known := make([]string, 0, len(table))
			for v := range table {
				known = append(known, v)
			}
			sort.Strings(known)
			return Fetch{}, fmt.Errorf("%w: the mirror table has no consul %s (it has %s); add it", ErrArtifact, version, strings.Join(known, ", "))
		}
		return f, nil
	}
}

// Exit statuses of FetchScript besides 0 (fetched and verified).
const (
	FetchExitNoDownloader = 90 // neither curl nor wget is on the host's PATH
	FetchExitDownload     = 91 // the download failed (stderr says why)
	FetchExitMismatch     = 92 // the download's SHA-256 differs; stdout is the one it has
)

// FetchScript is a POSIX sh script that a host runs to fetch a binary
// itself. Its arguments: $1 the URL, $2 the expected SHA-256 (hex), $3 the
// file to write (a temporary file next to the installed binary, which it
// overwrites). It downloads with curl, or wget when there is no curl,
// computes the file's SHA-256 with sha256sum and compares it. It never
// touches any other file: on a mismatch it removes $3 and exits
// FetchExitMismatch printing the checksum it got; with no downloader it
// exits FetchExitNoDownloader; a failed download exits FetchExitDownload.
// Installing the verified file is the caller's next step.
//
// Run it through FetchCommand, which passes the values as positional
// parameters: no value is ever spliced into the script.
const FetchScript = `set -u
url=$1 want=$2 out=$3
if command -v curl >/dev/null 2>&1; then
	curl --fail --silent --show-error --location --retry 3 --output "$out" --url "$url" || exit 91
elif command -v wget >/dev/null 2>&1; then
	wget -q -O "$out" -- "$url" || {
		rc=$?
		echo "wget exited $rc (8: the server answered with an error such as 404)" >&2
		exit 91
	}
else
	echo "neither curl nor wget is on PATH ($PATH)" >&2
	exit 90
fi
got=$(sha256sum -- "$out") || exit 91
got=${got%% *}
if [ "$got" != "$want" ]; then
	rm -f -- "$out"
	printf '%s\n' "$got"
	exit 92
fi
`

// FetchCommand returns the argv that runs FetchScript on a host with sh:
// sh -c SCRIPT consul-fetch URL SHA256 DEST.
func FetchCommand(url, sha256, dest string) []string {
	return []string{"sh", "-c", FetchScript, "consul-fetch", url, sha256, dest}
}

// FetchProblem is why a host could not fetch a binary.
type FetchProblem string

const (
	FetchNoDownloader FetchProblem = "no-downloader" // neither curl nor wget on the host
	FetchDownload     FetchProblem = "download"      // the download failed
	FetchMismatch     FetchProblem = "mismatch"      // the download's SHA-256 is not the expected one
)

// FetchError reports a host that could not fetch the binary for a swap
// itself. Nothing was installed and the agent was not stopped: the running
// binary is untouched. It wraps ErrArtifact.
type FetchError struct {
	Node    string
	Version string
	URL     string
	Problem FetchProblem
	Want    string // expected SHA-256 (hex)
	Got     string // the SHA-256 the host computed (FetchMismatch only)
	Output  string // what the host's fetch printed (bounded), for FetchDownload
}

func (e *FetchError) Error() string {
	switch e.Problem {
	case FetchNoDownloader:
		return fmt.Sprintf("node %s: cannot fetch consul %s from %s: neither curl nor wget is installed on the host; install one of them (e.g. apt-get install curl), or stage the binary from the orchestrator instead of fetching", e.Node, e.Version, e.URL)
	case FetchMismatch:
		return fmt.Sprintf("node %s: consul %s fetched from %s has sha256 %s, want %s; refused, nothing installed, the agent keeps running; fix the mirror's file or the pinned checksum", e.Node, e.Version, e.URL, e.Got, e.Want)
	default:
		out := strings.TrimSpace(e.Output)
		if out != "" {
			out = ": " + out
		}
		return fmt.Sprintf("node %s: download of consul %s from %s failed%s; check that the host reaches the mirror and that the file is there", e.Node, e.Version, e.URL, out)
	}
}

// Unwrap returns ErrArtifact.
func (e *FetchError) Unwrap() error { return ErrArtifact }

// FetchResult turns how FetchCommand ended on a host (exit status, stdout,
// combined output) into nil or a *FetchError; known is false when the exit
// status is none of FetchScript's (the caller reports it as a failed
// command).
func FetchResult(node, version string, f Fetch, exit int, stdout, output string) (known bool, err error) {
	fe := &FetchError{Node: node, Version: version, URL: f.URL, Want: f.SHA256}
	switch exit {
	case 0:
		return true, nil
	case FetchExitNoDownloader:
		fe.Problem = FetchNoDownloader
	case FetchExitDownload:
		fe.Problem, fe.Output = FetchDownload, bounded(output)
	case FetchExitMismatch:
		fe.Problem = FetchMismatch
		fe.Got = strings.TrimSpace(stdout)
		if i := strings.IndexByte(fe.Got, '\n'); i >= 0 {
			fe.Got = fe.Got[:i]
		}
	default:
		return false, nil
	}
	return true, fe
}

func bounded(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}

// Exit statuses of ProbeScript besides 0 (the URL answers).
const (
	ProbeExitNoDownloader = FetchExitNoDownloader // neither curl nor wget is on the host's PATH
	ProbeExitUnreachable  = 91                    // the URL does not answer with success (stderr says why)
)

// ProbeScript is a POSIX sh script that a host runs to check, before a
// swap, that it reaches a mirror's URL, without downloading the binary: a
// HEAD request with curl, or wget --spider when there is no curl. Its
// argument $1 is the URL. It exits 0 when the URL answers with success,
// ProbeExitUnreachable when it does not, and ProbeExitNoDownloader when the
// host has neither tool (FetchScript would fail there too). It writes no
// file. Run it through ProbeCommand.
const ProbeScript = `set -u
url=$1
if command -v curl >/dev/null 2>&1; then
	curl --fail --silent --show-error --location --head --output /dev/null --url "$url" || exit 91
elif command -v wget >/dev/null 2>&1; then
	wget -q --spider -- "$url" || {
		rc=$?
		echo "wget exited $rc (8: the server answered with an error such as 404)" >&2
		exit 91
	}
else
	echo "neither curl nor wget is on PATH ($PATH)" >&2
	exit 90
fi
`

// ProbeCommand returns the argv that runs ProbeScript on a host with sh:
// sh -c SCRIPT consul-probe URL.
func ProbeCommand(url string) []string {
	return []string{"sh", "-c", ProbeScript, "consul-probe", url}
}
