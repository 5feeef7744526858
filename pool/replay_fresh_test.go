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

// A replay goes to another member than the one whose conn failed when one
// is eligible (a member being killed may still complete a handshake before
// its listener is gone: the fault suite's restart test lost a GET so), and
// to the same one, on a fresh conn, when it is the only one.
func TestReplayAvoidsTheFailedMember(t *testing.T) {
	b1, b2 := newLineBackend(t, 0), newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute}, 0, config.CloseReset, b1.addr, b2.addr)
	ms := p.Members()
	for i := range 4 {
		failed := ms[i%2]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := r.GetReplay(ctx, nil, failed)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if c.Member == failed || c.Reused {
			t.Errorf("replay %d after %s failed: went to %s (reused %v)", i, failed.Address(), c.Member.Address(), c.Reused)
		}
		r.Put(c, true)
	}
	ms[1].SetState(AdminDisabled)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.GetReplay(ctx, nil, ms[0])
	if err != nil || c.Member != ms[0] || c.Reused {
		t.Fatalf("only the failed member left: %v, %+v", err, c)
	}
	r.Put(c, true)
}
