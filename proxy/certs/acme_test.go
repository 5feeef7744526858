package certs

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/acmetest"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// acmeListener listens on 127.0.0.1 and starts a pebble whose validation
// authority dials that port, as the CA dials 443 in production.
func acmeListener(t *testing.T) (net.Listener, *acmetest.CA, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return ln, acmetest.Start(t, port, port), port
}

func acmeConfig(ca *acmetest.CA, port int, domains ...string) config.TLS {
	d := config.DefaultTLS(config.ModeTCP)
	return config.TLS{
		CipherSuiteIDs: d.CipherSuiteIDs,
		CurveIDs:       d.CurveIDs,
		ACME: &config.ACME{
			Email:       "ops@tether.test",
			CA:          ca.DirectoryURL,
			CARoot:      ca.ServerCAFile,
			Domains:     domains,
			Challenges:  []string{config.ChallengeTLSALPN},
			HTTPPort:    port,
			TLSALPNPort: port,
		},
		MinVersion:        "1.2",
		MinVersionID:      tls.VersionTLS12,
		ClientAuth:        config.ClientAuthNone,
		SessionTickets:    true,
		TicketKeyRotation: time.Hour,
		HandshakeTimeout:  10 * time.Second,
	}
}

// answerHTTP answers one HTTP/1.1 request with 200 "ok".
func answerHTTP(c *tls.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	_ = req.Body.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
}

func TestACMEObtainsThroughTLSALPNChallengeOnTheListener(t *testing.T) {
	const name = "alpn.tether.test" // made up: the test CA's DNS says 127.0.0.1
	ln, ca, port := acmeListener(t)
	c := acmeConfig(ca, port, name)
	c.ACME.Storage = t.TempDir()
	c.ALPN = []string{"http/1.1"}
	m, srv := startACME(t, ln, c, answerHTTP)
	if srv.challenges.Load() == 0 {
		t.Fatal("the CA never validated on the listener (no acme-tls/1 handshake seen)")
	}

	// An HTTPS client that trusts the CA's issuing root only.
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Roots()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + name + ":" + strconv.Itoa(port) + "/")
	if err != nil {
		t.Fatalf("HTTPS request verified against the CA's root: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || resp.TLS.PeerCertificates[0].DNSNames[0] != name {
		t.Fatalf("got %d %q from %v", resp.StatusCode, body, resp.TLS.PeerCertificates[0].DNSNames)
	}

	// A client without SNI gets the first domain's certificate.
	conn, err := dial(t, srv.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]; got != name {
		t.Fatalf("no SNI got %q, want %q", got, name)
	}
	if ci := m.Certificates(); len(ci) != 1 || ci[0].Source != "acme" || ci[0].Names[0] != name || ci[0].Issuer != resp.TLS.PeerCertificates[0].Issuer.String() {
		t.Fatalf("Certificates() = %+v", ci)
	}
}

func TestACMEOnDemandObtainsAllowedNamesOnly(t *testing.T) {
	const eager = "eager.tether.test" // in Domains: obtained at Start
	ln, ca, port := acmeListener(t)
	c := acmeConfig(ca, port, eager)
	c.ACME.Storage = t.TempDir()
	c.ACME.OnDemand = true
	c.ACME.OnDemandAllow = []string{"*.od.tether.test", "exact.tether.test"}
	m, err := New(c, nil) // no ALPN configured: tcp mode
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := serveTLSOn(t, ln, m.TLSConfig(), echo)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Ready(ctx, eager); err != nil {
		t.Fatal(err)
	}

	// The first handshake for an allowed name obtains its certificate.
	// The client offers ALPN although the server has none: acme-tls/1,
	// offered to the CA only, must not make that a refusal.
	for _, name := range []string{"a.od.tether.test", "exact.tether.test"} {
		conn, err := dial(t, srv.addr, &tls.Config{ServerName: name, RootCAs: ca.Roots(), NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := conn.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != name {
			t.Fatalf("%s: served %v", name, got)
		}
		if err := exchange(conn, "on demand"); err != nil {
			t.Fatal(err)
		}
	}

	// Names outside the allow-list are refused without asking the CA.
	orders := ca.Orders()
	for _, name := range []string{"evil.tether.test", "x.a.od.tether.test", "od.tether.test"} {
		if _, err := dial(t, srv.addr, &tls.Config{ServerName: name, InsecureSkipVerify: true}); err == nil {
			t.Fatalf("%s: handshake completed for a name outside on_demand_allow", name)
		}
	}
	if got := ca.Orders(); got != orders {
		t.Fatalf("the CA got %d orders for refused names", got-orders)
	}
	if err := m.decide(context.Background(), "evil.tether.test"); err == nil {
		t.Fatal("decide allowed evil.tether.test")
	}
	if n := len(m.Certificates()); n != 3 {
		t.Fatalf("Certificates() lists %d, want 3 (eager, a.od, exact): %+v", n, m.Certificates())
	}
}

// startACME builds c's Manager for the virtual server listening on ln,
// serves ln with handle, starts the Manager and waits for c's first
// domain; everything ends with the test.
func startACME(t *testing.T, ln net.Listener, c config.TLS, handle func(*tls.Conn)) (*Manager, *tlsServer) {
	t.Helper()
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	m.SetListenAddr(ln.Addr())
	srv := serveTLSOn(t, ln, m.TLSConfig(), handle) // the listener is up before Start
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Ready(ctx, c.ACME.Domains[0]); err != nil {
		t.Fatal(err)
	}
	return m, srv
}

// leafOf completes a handshake for name with a client trusting the CA's
// root only, and returns the certificate served.
func leafOf(t *testing.T, addr, name string, ca *acmetest.CA) *x509.Certificate {
	t.Helper()
	conn, err := dial(t, addr, &tls.Config{ServerName: name, RootCAs: ca.Roots()})
	if err != nil {
		t.Fatalf("handshake for %s verified against the CA's root: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestACMEObtainsThroughHTTP01(t *testing.T) {
	const name = "http01.tether.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := acmetest.FreePort(t) // certmagic answers http-01 on a listener of its own there
	ca := acmetest.Start(t, httpPort, ln.Addr().(*net.TCPAddr).Port)
	c := acmeConfig(ca, 0, name)
	c.ACME.Challenges = []string{config.ChallengeHTTP}
	c.ACME.HTTPPort = httpPort
	c.ACME.TLSALPNPort = ln.Addr().(*net.TCPAddr).Port
	c.ACME.Storage = t.TempDir()
	m, srv := startACME(t, ln, c, echo)
	if n := srv.challenges.Load(); n != 0 {
		t.Fatalf("%d tls-alpn-01 handshakes with only http-01 enabled", n)
	}
	if leaf := leafOf(t, srv.addr, name, ca); leaf.DNSNames[0] != name {
		t.Fatalf("served %v", leaf.DNSNames)
	}
	if st := m.ACMEStats(); st.Obtained != 1 || st.Renewed != 0 {
		t.Fatalf("ACMEStats = %+v, want 1 obtained", st)
	}
	// certmagic's http-01 listener is gone once the challenge is solved.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)), time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("the http-01 port %d still accepts after the certificate was obtained", httpPort)
	}
}

// With certificates that live 12 s and a 1 s renew_interval, certmagic
// renews in the background: new handshakes get the new certificate, a
// connection opened before keeps working, and nothing restarts.
func TestACMERenewsBeforeExpiry(t *testing.T) {
	const name = "renew.tether.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ca := acmetest.StartWith(t, port, port, acmetest.Options{Validity: 12 * time.Second})
	c := acmeConfig(ca, port, name)
	c.ACME.Storage = t.TempDir()
	c.ACME.RenewInterval = time.Second
	c.ACME.RenewalWindowRatio = 0.5
	m, srv := startACME(t, ln, c, echo)
	first := leafOf(t, srv.addr, name, ca)
	if life := first.NotAfter.Sub(first.NotBefore); life > 15*time.Second {
		t.Fatalf("the CA issued a certificate valid for %v, want about 12 s", life)
	}
	open, err := dial(t, srv.addr, &tls.Config{ServerName: name, RootCAs: ca.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(open, "before"); err != nil {
		t.Fatal(err)
	}

	var renewed *x509.Certificate
	socktest.WaitFor(t, 25*time.Second, "a renewed certificate in new handshakes", func() bool {
		leaf := leafOf(t, srv.addr, name, ca)
		if leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		renewed = leaf
		return true
	})
	if !renewed.NotAfter.After(first.NotAfter) || renewed.DNSNames[0] != name {
		t.Fatalf("renewed certificate %v until %v, first until %v", renewed.DNSNames, renewed.NotAfter, first.NotAfter)
	}
	if time.Now().After(first.NotAfter) {
		t.Fatalf("renewed only after the first certificate expired (%v)", first.NotAfter)
	}
	if st := m.ACMEStats(); st.Obtained != 1 || st.Renewed < 1 || st.Failed != 0 {
		t.Fatalf("ACMEStats = %+v, want 1 obtained, at least 1 renewed, none failed", st)
	}
	if err := exchange(open, "after"); err != nil {
		t.Fatalf("the conn opened before the renewal: %v", err)
	}
}

func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		name, pattern string
		want          bool
	}{
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "*.example.com", true},
		{"example.com", "*.example.com", false},
		{"a.b.example.com", "*.example.com", false},
		{"aexample.com", "*.example.com", false},
		{"b.example.com", "a.example.com", false},
	} {
		if got := matchName(tc.name, tc.pattern); got != tc.want {
			t.Errorf("matchName(%q, %q) = %v, want %v", tc.name, tc.pattern, got, tc.want)
		}
	}
}
