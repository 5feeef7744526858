package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/pool"
)

// A member that dies ends all its conns at once: a GET whose reused conn is
// reset under it is replayed on a fresh conn, not on another idle conn of
// the same member (which died too: the replay, allowed once, would fail and
// the client get a 502, as the fault suite's member restart test saw).
func TestHTTPReplayGoesOnAFreshConn(t *testing.T) {
	m := startScriptedMember(t, func(conn, req int) memberAction {
		if conn < 2 && req == 1 {
			return resetOnRead // both warm conns die when the next request arrives
		}
		return answer
	})
	// Warm two member conns: the first request waits (before its write)
	// until the second took a conn of its own.
	var mu sync.Mutex
	taken := 0
	second := make(chan struct{})
	testHookMemberConn = func(*pool.ServerConn) {
		mu.Lock()
		taken++
		n := taken
		mu.Unlock()
		switch n {
		case 1:
			select {
			case <-second:
			case <-time.After(2 * time.Second):
			}
		case 2:
			close(second)
		}
	}
	t.Cleanup(func() { testHookMemberConn = nil })
	p := startProxy(t, httpConfig("", "idle_timeout = \"60s\"", m.Addr()))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := send(t, p.addr("vs"), "GET"); got != "HTTP/1.1 200 OK" {
				t.Errorf("warm-up: %q", got)
			}
		}()
	}
	wg.Wait()
	if m.Accepted() != 2 {
		t.Fatalf("warm-up opened %d member conns, want 2", m.Accepted())
	}
	if got := send(t, p.addr("vs"), "GET"); got != "HTTP/1.1 200 OK" {
		t.Fatalf("GET whose reused conn was reset: %q, want 200 from its replay on a fresh conn", got)
	}
	lines := p.waitAccess(t, 3)
	if got := fieldString(lines[2], "replay"); got != "no-response" {
		t.Errorf("access replay = %q, want no-response", got)
	}
	if got := fieldString(lines[2], "reused"); got != "false" {
		t.Errorf("the replay went on a reused conn (reused=%s)", got)
	}
	if m.Accepted() != 3 {
		t.Errorf("member accepted %d conns, want 3 (the replay's fresh one)", m.Accepted())
	}
}
