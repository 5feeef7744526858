package pool

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// tlsMember is a TLS line member with its own CA, counting handshakes.
type tlsMember struct {
	*lineBackend
	ca         *testpki.CA
	handshakes atomic.Int64
}

// newTLSMember starts one. lateTickets makes the member ask for a client
// certificate, which (in TLS 1.3) makes it send its session tickets after
// the client's Finished: they arrive on the socket after the client's
// handshake returned, as OpenSSL servers (nginx) send them.
func newTLSMember(t *testing.T, idle time.Duration, lateTickets bool) *tlsMember {
	t.Helper()
	m := &tlsMember{ca: testpki.New(t)}
	leaf := m.ca.Issue(t, "member", "member.test", testpki.Options{})
	conf := &tls.Config{
		Certificates: []tls.Certificate{leaf.Pair},
		VerifyConnection: func(tls.ConnectionState) error {
			m.handshakes.Add(1)
			return nil
		},
	}
	if lateTickets {
		conf.ClientAuth = tls.RequestClientCert
	}
	m.lineBackend = newTLSLineBackend(t, idle, conf)
	return m
}

// tlsPool starts a pool of addrs speaking TLS with client config conf.
func tlsPool(t *testing.T, cfg config.Pool, conf *tls.Config) *Pool {
	t.Helper()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetTLS(func(string) *tls.Config { return conf }, time.Second)
	p.Start()
	t.Cleanup(p.Close)
	return p
}

func tlsReuser(t *testing.T, p *Pool, s config.Reuse) *ConnPool {
	t.Helper()
	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(s))
	t.Cleanup(r.Close)
	return r
}

// Pooled TLS conns are reused like plain ones: the stale check reads the
// session tickets a member sent after the handshake (TLS records, no
// application byte) instead of calling the conn stale, and one handshake
// serves every exchange.
func TestTLSConnsAreReusedThroughTheStaleCheck(t *testing.T) {
	m := newTLSMember(t, 0, true)
	conf := m.ca.ClientConfig("member.test")
	conf.NextProtos = nil
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(8) // so the member sends tickets
	p := tlsPool(t, testPool(config.MethodRoundRobin, m.addr), conf)
	r := tlsReuser(t, p, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute})

	// Borrow and return at once: the tickets are still on the way.
	c := get(t, r)
	if c.TLS == nil || c.Conn != net.Conn(c.TLS) {
		t.Fatal("a TLS pool lent a conn without TLS")
	}
	r.Put(c, true)
	socktest.WaitFor(t, 2*time.Second, "the member's tickets on the idle socket", func() bool {
		return strings.Contains(errString(aliveOnly(c)), "unexpected data")
	})
	for i := 0; i < 10; i++ {
		c := get(t, r)
		mustExchange(t, c, "ping")
		r.Put(c, true)
	}
	if n := m.handshakes.Load(); n != 1 {
		t.Fatalf("member saw %d handshakes, want 1", n)
	}
	if st := stats(r, 0); st.Opened != 1 || st.Reused != 10 || st.StaleOnPeek != 0 {
		t.Fatalf("stats %+v, want 1 opened, 10 reused, none stale", st)
	}
	if ms := p.Members()[0].Stats(); ms.TLSHandshakes != 1 {
		t.Fatalf("member stats %+v", ms)
	}
}

func aliveOnly(c *ServerConn) error { return aliveTLS(c.TCP, nil) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A member that ends an idle TLS conn (close_notify, then FIN) is found by
// the check before reuse: the Get dials a new conn.
func TestTLSIdleConnClosedByTheMemberIsStale(t *testing.T) {
	m := newTLSMember(t, 200*time.Millisecond, false)
	p := tlsPool(t, testPool(config.MethodRoundRobin, m.addr), m.ca.ClientConfig("member.test"))
	r := tlsReuser(t, p, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute})
	c := get(t, r)
	mustExchange(t, c, "one")
	r.Put(c, true)
	socktest.WaitFor(t, 3*time.Second, "the member to close its idle conn", func() bool { return m.Open() == 0 })
	c = get(t, r)
	mustExchange(t, c, "two")
	r.Put(c, true)
	if st := stats(r, 0); st.Opened != 2 || st.StaleOnPeek != 1 {
		t.Fatalf("stats %+v, want 2 opened, 1 stale", st)
	}
}

// A member certificate that does not verify fails the Get with the
// verification error, counted as a TLS failure against the member.
func TestTLSMemberThatDoesNotVerifyFailsTheGet(t *testing.T) {
	m := newTLSMember(t, 0, false)
	other := testpki.New(t)
	p := tlsPool(t, testPool(config.MethodRoundRobin, m.addr), other.ClientConfig("member.test"))
	r := tlsReuser(t, p, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.Get(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("Get: %v, want the verification error", err)
	}
	if ms := p.Members()[0].Stats(); ms.TLSFailures != 1 || ms.TLSHandshakes != 0 {
		t.Fatalf("member stats %+v", ms)
	}
}

// tcp mode: preconnected conns are TLS conns, handshaken in advance.
func TestTLSPreconnectStockIsHandshaken(t *testing.T) {
	m := newTLSMember(t, 0, false)
	cfg := testPool(config.MethodRoundRobin, m.addr)
	cfg.Preconnect = 1
	p := tlsPool(t, cfg, m.ca.ClientConfig("member.test"))
	d := p.Dialer(config.DefaultProfile())
	socktest.WaitFor(t, 3*time.Second, "a preconnected conn", func() bool { return d.Idle(p.Members()[0]) == 1 })
	// TLS 1.3: the member's side of the handshake ends after the client's
	// (it reads the client's Finished), so its count may lag a moment.
	socktest.WaitFor(t, 3*time.Second, "the member to count the handshake", func() bool { return m.handshakes.Load() >= 1 })
	if n := m.handshakes.Load(); n != 1 {
		t.Fatalf("member saw %d handshakes before any client, want 1", n)
	}
	c, err := connect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	defer c.TCP.Close()
	if !c.Preconnected || c.TLS == nil {
		t.Fatalf("got preconnected=%v tls=%v", c.Preconnected, c.TLS != nil)
	}
	_ = c.TCP.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.TLS.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if _, err := c.TLS.Read(got); err != nil || string(got) != "hi\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// The reaper drops an idle TLS conn the member ended (close_notify, then
// FIN) without waiting for a Get to find it: its slot is freed.
func TestTLSReaperDropsAnIdleConnTheMemberClosed(t *testing.T) {
	m := newTLSMember(t, 100*time.Millisecond, false)
	p := tlsPool(t, testPool(config.MethodRoundRobin, m.addr), m.ca.ClientConfig("member.test"))
	r := tlsReuser(t, p, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, PeekInterval: 20 * time.Millisecond})
	c := get(t, r)
	mustExchange(t, c, "one")
	r.Put(c, true)
	socktest.WaitFor(t, 5*time.Second, "the reaper to drop the closed TLS conn", func() bool {
		return stats(r, 0).StaleOnPeek == 1 && r.Idle(p.Members()[0]) == 0 && p.Members()[0].Active() == 0
	})
}
