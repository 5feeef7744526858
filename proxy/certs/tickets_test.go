package certs

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// resumes makes a full handshake with a fresh session cache (keeping the
// ticket the server sends), lets between run, then reports whether a
// second handshake resumed.
func resumes(t *testing.T, addr string, conf *tls.Config, between func()) bool {
	t.Helper()
	conf = conf.Clone()
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	first, err := dial(t, addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	if first.ConnectionState().DidResume {
		t.Fatal("the first handshake resumed")
	}
	// TLS 1.3 tickets come after the handshake: a read takes them in.
	if err := exchange(first, "ticket"); err != nil {
		t.Fatal(err)
	}
	between()
	second, err := dial(t, addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(second, "again"); err != nil {
		t.Fatal(err)
	}
	return second.ConnectionState().DidResume
}

func TestSessionTicketResumesWithinTwoRotations(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "ticket-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	m, _ := newManager(t, staticConfig(a)) // rotation 1h: only the test rotates
	srv := serveTLS(t, m.TLSConfig(), echo)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conf := &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool, MaxVersion: v}
		if !resumes(t, srv.addr, conf, func() {}) {
			t.Fatalf("%s: no resumption", tls.VersionName(v))
		}
		if !resumes(t, srv.addr, conf, m.rotateTicketKey) {
			t.Fatalf("%s: a ticket did not resume after one rotation", tls.VersionName(v))
		}
	}
}

func TestSessionTicketExpiresAfterTwoRotations(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "ticket-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.TicketKeyRotation = 20 * time.Millisecond
	m, _ := newManager(t, c)
	srv := serveTLS(t, m.TLSConfig(), echo)
	conf := &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool}
	if resumes(t, srv.addr, conf, func() {
		// The ticket was sealed with key number made (or older).
		made := m.keysMade.Load()
		socktest.WaitFor(t, 5*time.Second, "two ticket key rotations", func() bool { return m.keysMade.Load() >= made+2 })
	}) {
		t.Fatal("a ticket resumed after two rotations of the ticket keys")
	}
}

func TestSessionTicketsOffNeverResume(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "ticket-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.SessionTickets = false
	m, _ := newManager(t, c)
	srv := serveTLS(t, m.TLSConfig(), echo)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conf := &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool, MaxVersion: v}
		if resumes(t, srv.addr, conf, func() {}) {
			t.Fatalf("%s: resumed with session_tickets = false", tls.VersionName(v))
		}
	}
	if n := m.keysMade.Load(); n != 0 {
		t.Fatalf("%d ticket keys made with tickets off", n)
	}
}
