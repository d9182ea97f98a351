package consulrig

import "testing"

func TestAFailuresLogTailLeavesOutTheHTTPRequestLines(t *testing.T) {
	log := "2026-12-01T18:27:40Z [INFO]  agent.server.raft: entering leader state: leader=\"Node at 127.0.3.12:8300 [Leader]\"\n" +
		"2026-12-01T18:27:42Z [DEBUG] agent.http: Request finished: method=GET url=/v1/kv/traffic/k2?consistent from=127.0.0.1:59770 latency=6.5ms\n" +
		"2026-12-01T18:27:43Z [DEBUG] agent.server.raft: starting leadership transfer: id=e45e address=127.0.3.11:8300\n" +
		"2026-12-01T18:27:44Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/kv/traffic/k0 from=127.0.0.1:59770 latency=4.5ms\n"
	got := tail(withoutRequests(log), 30)
	want := "2026-12-01T18:27:40Z [INFO]  agent.server.raft: entering leader state: leader=\"Node at 127.0.3.12:8300 [Leader]\"\n" +
		"2026-12-01T18:27:43Z [DEBUG] agent.server.raft: starting leadership transfer: id=e45e address=127.0.3.11:8300"
	if got != want {
		t.Errorf("tail without the request lines:\n%s\nwant:\n%s", got, want)
	}
	if got := tail(withoutRequests(log), 1); got != "2026-12-01T18:27:43Z [DEBUG] agent.server.raft: starting leadership transfer: id=e45e address=127.0.3.11:8300" {
		t.Errorf("the last line without the request lines is %q", got)
	}
}
