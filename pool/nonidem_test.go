package pool

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func getFor(t *testing.T, r *ConnPool, kind RequestKind) *ServerConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.GetFor(ctx, nil, kind)
	if err != nil {
		t.Fatalf("GetFor(%d): %v", kind, err)
	}
	return c
}

// waitIdle waits until c, idle in r, has idled at least d.
func waitIdle(t *testing.T, r *ConnPool, c *ServerConn, d time.Duration) {
	t.Helper()
	r.mu.Lock()
	since := c.idleSince
	r.mu.Unlock()
	socktest.WaitFor(t, 5*time.Second, "the idle conn to age", func() bool { return time.Since(since) >= d })
}

// A POST-style Get takes the youngest idle conn only while it is younger
// than the safe age; an older one stays for idempotent requests and the
// POST gets a fresh dial. At the member's max_connections the old conn is
// closed to free its slot.
func TestNonIdempotentGetSkipsAnIdleConnOlderThanTheSafeAge(t *testing.T) {
	const safe = 100 * time.Millisecond
	for _, maxConns := range []int{0, 1} {
		b := newLineBackend(t, 0)
		p, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, PeekInterval: time.Hour,
			NonIdempotentSafeIdle: safe, NonIdempotentFallback: config.FallbackDial}, maxConns, config.CloseGraceful, b.addr)
		m := p.Members()[0]
		old := get(t, r)
		mustExchange(t, old, "first")
		r.Put(old, true)
		if c := getFor(t, r, NonIdempotent); c != old { // young: reused
			t.Fatalf("max_connections %d: a young idle conn was not reused", maxConns)
		} else {
			r.Put(c, true)
		}
		waitIdle(t, r, old, safe)
		c := getFor(t, r, NonIdempotent)
		if c == old || c.Reused {
			t.Fatalf("max_connections %d: a POST got the conn idle for %v (safe age %v)", maxConns, time.Since(old.idleSince), safe)
		}
		mustExchange(t, c, "post")
		s := stats(r, 0)
		if s.NonIdempotentDials != 1 || s.Opened != 2 {
			t.Errorf("max_connections %d: stats %+v; want 1 non-idempotent dial, 2 opened", maxConns, s)
		}
		if maxConns == 0 {
			// The old conn is still idle, for an idempotent request.
			if s.NonIdempotentEvicted != 0 || r.Idle(m) != 1 {
				t.Errorf("stats %+v idle %d; want the old conn kept idle", s, r.Idle(m))
			}
			if g := get(t, r); g != old {
				t.Errorf("an idempotent Get did not take the old idle conn")
			} else {
				r.Put(g, true)
			}
		} else {
			// At the limit, the old conn's slot: tether closed it (FIN).
			if s.NonIdempotentEvicted != 1 || r.Idle(m) != 0 || m.Active() != 1 {
				t.Errorf("stats %+v idle %d active %d; want the old conn evicted, one conn", s, r.Idle(m), m.Active())
			}
			socktest.WaitFor(t, 5*time.Second, "the member to see the old conn's FIN", func() bool {
				e, ok := b.endOf(old.TCP.LocalAddr().String())
				return ok && e.how == "eof"
			})
		}
		r.Put(c, true)
	}
}

func TestNonIdempotentFallbackReuseTakesTheOldConn(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, PeekInterval: time.Hour,
		NonIdempotentSafeIdle: 50 * time.Millisecond, NonIdempotentFallback: config.FallbackReuse}, 0, config.CloseGraceful, b.addr)
	old := get(t, r)
	mustExchange(t, old, "first")
	r.Put(old, true)
	waitIdle(t, r, old, 50*time.Millisecond)
	if c := getFor(t, r, NonIdempotent); c != old {
		t.Fatal("fallback reuse: the old idle conn was not taken")
	} else {
		r.Put(c, true)
	}
	if s := stats(r, 0); s.NonIdempotentDials != 0 || s.Opened != 1 {
		t.Errorf("stats %+v; want no fresh dial", s)
	}
}

func TestNonIdempotentGetOnAWarmPoolDoesNotAllocate(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, PeekInterval: time.Hour,
		NonIdempotentSafeIdle: time.Minute, NonIdempotentFallback: config.FallbackDial}, 8, config.CloseGraceful, b.addr)
	r.Put(get(t, r), true)
	ctx := context.Background()
	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	allocs := testing.AllocsPerRun(200, func() {
		c, err := r.GetFor(ctx, client, NonIdempotent)
		if err != nil || !c.Reused {
			panic(err)
		}
		r.Put(c, true)
	})
	if allocs != 0 {
		t.Errorf("GetFor(NonIdempotent)+Put allocates %.1f times", allocs)
	}
}
