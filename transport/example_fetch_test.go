package transport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// A Mirror tells a transport where hosts fetch each version's binary; an
// entry is checked before any host is touched.
func ExampleMirrors() {
	mirror := transport.Mirrors(map[string]transport.Fetch{
		"1.13.9": {URL: "https://mirror.internal/consul/1.13.9/consul", SHA256: strings.Repeat("ab", 32)},
		"1.14.8": {URL: "ftp://mirror.internal/consul/1.14.8/consul", SHA256: "unknown"},
	})
	for _, v := range []string{"1.13.9", "1.14.8", "1.15.4"} {
		f, err := mirror(context.Background(), v)
		if err == nil {
			err = f.Validate()
		}
		fmt.Printf("%s: %v (artifact error: %v)\n", v, err, errors.Is(err, transport.ErrArtifact))
	}
	// Output:
	// 1.13.9: <nil> (artifact error: false)
	// 1.14.8: artifact unavailable or corrupt: fetch: URL "ftp://mirror.internal/consul/1.14.8/consul" is not an absolute http:// or https:// URL; the host downloads it with curl or wget; SHA256 "unknown" is not 64 lower-case hex digits; give the release's checksum (SHA256SUMS) (artifact error: true)
	// 1.15.4: artifact unavailable or corrupt: the mirror table has no consul 1.15.4 (it has 1.13.9, 1.14.8); add it (artifact error: true)
}

// FetchResult reads how FetchCommand ended on a host; a checksum mismatch
// names the host, the URL, the checksum wanted and the one the host got.
func ExampleFetchResult() {
	f := transport.Fetch{URL: "https://mirror.internal/consul/1.13.9/consul", SHA256: strings.Repeat("ab", 32)}
	_, err := transport.FetchResult("c42", "1.13.9", f, transport.FetchExitMismatch, strings.Repeat("cd", 32)+"\n", "")
	fmt.Println(err)
	_, err = transport.FetchResult("c43", "1.13.9", f, transport.FetchExitNoDownloader, "", "")
	fmt.Println(err)
	// Output:
	// node c42: consul 1.13.9 fetched from https://mirror.internal/consul/1.13.9/consul has sha256 cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd, want abababababababababababababababababababababababababababababababab; refused, nothing installed, the agent keeps running; fix the mirror's file or the pinned checksum
	// node c43: cannot fetch consul 1.13.9 from https://mirror.internal/consul/1.13.9/consul: neither curl nor wget is installed on the host; install one of them (e.g. apt-get install curl), or stage the binary from the orchestrator instead of fetching
}
