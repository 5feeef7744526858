package pool

import (
	"context"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
)

// A replay gets a fresh conn, never another idle one (which may have died
// with the conn that failed: the fault suite's member restart test lost a
// GET so, its replay sent on a second conn of the killed member); only a
// member at its max_connections gives it an idle one.
func TestReplayGetsAFreshConn(t *testing.T) {
	b := newLineBackend(t, 0)
	for _, tc := range []struct {
		maxConns   int
		wantReused bool
	}{{0, false}, {2, true}} {
		_, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute}, tc.maxConns, config.CloseReset, b.addr)
		c1, c2 := get(t, r), get(t, r)
		for _, c := range []*ServerConn{c1, c2} {
			if err := exchange(c, "warm"); err != nil {
				t.Fatal(err)
			}
		}
		r.Put(c1, true)
		r.Put(c2, true)
		m := r.pool.Members()[0]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := r.GetFor(ctx, nil, Replay)
		cancel()
		if err != nil {
			t.Fatalf("max_connections %d: GetFor(Replay): %v", tc.maxConns, err)
		}
		if c.Reused != tc.wantReused {
			t.Errorf("max_connections %d: replay conn reused %v, want %v (idle conns left: %d)", tc.maxConns, c.Reused, tc.wantReused, r.Idle(m))
		}
		if err := exchange(c, "replayed"); err != nil {
			t.Fatal(err)
		}
		r.Put(c, true)
	}
}
