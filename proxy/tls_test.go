package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// tlsBlock is a [virtual_server.tls] table serving one certificate.
func tlsBlock(cert, key, extra string) string {
	return fmt.Sprintf("\n[virtual_server.tls]\ncertificates = [ { cert = %q, key = %q } ]\n%s\n", cert, key, extra)
}

// tlsGet does one GET over a new TLS conn and returns the status line, the
// body and the conn's state.
func tlsGet(t *testing.T, addr string, cfg *tls.Config) (string, string, tls.ConnectionState) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.Status, string(b), c.ConnectionState()
}

// http mode ends TLS: the member gets plain HTTP, the access line has the
// TLS version, cipher, SNI, ALPN, handshake time and resumption; a second
// conn with a session cache resumes.
func TestTLSHTTPModeTerminates(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	cert, key := leaf.CertFile, leaf.KeyFile
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "plain:"+fmt.Sprint(r.TLS == nil))
	}, nil)
	p := startProxy(t, httpConfig(tlsBlock(cert, key, ""), "", be.Addr()))
	cfg := pki.ClientConfig("a.test")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	status, body, cs := tlsGet(t, p.addr("vs"), cfg)
	if status != "200 OK" || body != "plain:true" {
		t.Fatalf("got %q %q", status, body)
	}
	if cs.NegotiatedProtocol != "http/1.1" || cs.Version != tls.VersionTLS13 {
		t.Fatalf("ALPN %q version %x", cs.NegotiatedProtocol, cs.Version)
	}
	p.waitAccess(t, 1) // the lines come in connection order
	if _, _, cs2 := tlsGet(t, p.addr("vs"), cfg); !cs2.DidResume {
		t.Fatal("second conn with a session cache did not resume")
	}
	lines := p.waitAccess(t, 2)
	for i, want := range []string{"false", "true"} {
		m := lines[i].ContextMap()
		if m["tls_version"] != "TLS 1.3" || m["sni"] != "a.test" || m["alpn"] != "http/1.1" ||
			fmt.Sprint(m["tls_resumed"]) != want || m["tls_cipher"] == "" {
			t.Fatalf("access line %d: %v", i, m)
		}
		if d, ok := m["tls_handshake"].(time.Duration); !ok || d <= 0 {
			t.Fatalf("access line %d: tls_handshake %v", i, m["tls_handshake"])
		}
	}
	if st := p.srv.VirtualServer("vs").TLSStats(); st.Handshakes != 2 || st.Resumed != 1 || st.Failed != 0 {
		t.Fatalf("TLS stats %+v", st)
	}
}

// tcp mode ends TLS too: decrypted bytes go to the member, a client's
// close_notify + FIN reach it as FIN, and its answer still comes back.
func TestTLSTCPModeRelaysDecryptedBytes(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "127.0.0.1", testpki.Options{})
	cert, key := leaf.CertFile, leaf.KeyFile
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", tlsBlock(cert, key, ""), "", be.Addr()))
	c, err := tls.Dial("tcp", p.addr("vs"), pki.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB: many records
	go func() {
		_, _ = io.WriteString(c, big)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != big {
		t.Fatalf("echoed %d bytes, want %d intact", len(got), len(big))
	}
	lines := p.waitAccess(t, 1)
	m := lines[0].ContextMap()
	if m["tls_version"] != "TLS 1.3" || m["closed_first"] != "client FIN" || m["bytes_in"] != int64(len(big)) {
		t.Fatalf("access line: %v", m)
	}
}

// client_auth = "require": no client certificate, no request; one signed
// by client_ca passes.
func TestTLSClientAuthRequire(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{RSA: true}) // RSA 2048 server key
	cert, key := leaf.CertFile, leaf.KeyFile
	client := pki.Issue(t, "client", "client.test", testpki.Options{Client: true})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig(tlsBlock(cert, key, fmt.Sprintf("client_auth = \"require\"\nclient_ca = %q", pki.File)), "", be.Addr()))

	// Without a certificate: in TLS 1.3 the client's handshake ends before
	// the server checks, so the refusal shows on the first read.
	c, err := tls.Dial("tcp", p.addr("vs"), pki.ClientConfig("a.test"))
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a client certificate: %v, want a certificate-required alert", err)
	}
	cfg := pki.ClientConfig("a.test")
	cfg.Certificates = []tls.Certificate{client.Pair}
	if status, body, _ := tlsGet(t, p.addr("vs"), cfg); status != "200 OK" || body != "ok" {
		t.Fatalf("with a client certificate: %q %q", status, body)
	}
	if be.requests.Load() != 1 {
		t.Fatalf("member served %d requests, want 1", be.requests.Load())
	}
}

// tlsMember is an HTTPS member with its own CA that counts its handshakes.
type tlsMember struct {
	*httpBackend
	pki        *testpki.CA
	handshakes atomic.Int64
}

func startTLSMember(t *testing.T, idle time.Duration) *tlsMember {
	t.Helper()
	m := &tlsMember{pki: testpki.New(t)}
	leaf := m.pki.Issue(t, "member", "member.test", testpki.Options{})
	m.httpBackend = startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls:"+fmt.Sprint(r.TLS != nil))
	}, func(s *http.Server) {
		s.IdleTimeout = idle
		s.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{leaf.Pair},
			NextProtos:   []string{"http/1.1"},
			VerifyConnection: func(tls.ConnectionState) error {
				m.handshakes.Add(1)
				return nil
			},
		}
	})
	return m
}

// TLS to members: verified against the pool's CA, pooled conns reused
// (handshakes counted at the member), including after the member's TLS 1.3
// session tickets wait unread on an idle conn; a member that closes idle
// conns is found by the stale check through TLS.
func TestTLSToMembersVerifiedAndReused(t *testing.T) {
	m := startTLSMember(t, 300*time.Millisecond)
	p := startProxy(t, httpConfig("", fmt.Sprintf("\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\n", m.pki.File), m.Addr()))
	cl := proxyClient(true)
	defer cl.CloseIdleConnections()
	url := "http://" + p.addr("vs") + "/"
	for i := 0; i < 20; i++ {
		if !getOK(cl, url, "tls:true") {
			t.Fatalf("request %d failed", i)
		}
	}
	if n := m.handshakes.Load(); n != 1 {
		t.Fatalf("member saw %d handshakes for 20 sequential requests, want 1 (pooled conn reused)", n)
	}
	st := p.srv.VirtualServer("vs").http.reuser.Stats()[0]
	if st.Opened != 1 || st.Reused != 19 {
		t.Fatalf("reuse stats %+v, want 1 opened, 19 reused", st)
	}
	// The member closes the idle conn (IdleTimeout 300 ms): the next
	// request goes on a new conn without an error or a replay.
	waitMemberClosedIdle(t, m.Addr())
	if !getOK(cl, url, "tls:true") {
		t.Fatal("request after the member closed its idle conn failed")
	}
	if n := m.handshakes.Load(); n != 2 {
		t.Fatalf("member saw %d handshakes, want 2", n)
	}
	st = p.srv.VirtualServer("vs").http.reuser.Stats()[0]
	if st.StaleOnPeek != 1 || st.ReplaysNoResponse+st.ReplaysHeadUnsent != 0 {
		t.Fatalf("reuse stats %+v, want the closed conn found stale by the check", st)
	}
	if ms := p.srv.Pool("p").Members()[0].Stats(); ms.TLSHandshakes != 2 || ms.TLSFailures != 0 {
		t.Fatalf("member stats %+v", ms)
	}
}

// A member certificate that does not verify: 502, and the access line
// names the verification error.
func TestTLSToMemberWithWrongCAIs502(t *testing.T) {
	m := startTLSMember(t, 0)
	other := testpki.New(t)
	p := startProxy(t, httpConfig("", fmt.Sprintf("\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\n", other.File), m.Addr()))
	out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 502 ") {
		t.Fatalf("got %q, want 502", out)
	}
	lines := p.waitAccess(t, 1)
	if e := fieldString(lines[0], "error"); !strings.Contains(e, "certificate signed by unknown authority") {
		t.Fatalf("access error %q does not name the verification error", e)
	}
	if m.requests.Load() != 0 {
		t.Fatalf("member served %d requests", m.requests.Load())
	}
	if ms := p.srv.Pool("p").Members()[0].Stats(); ms.TLSFailures == 0 {
		t.Fatalf("member stats %+v: no TLS failure counted", ms)
	}
}

// Garbage on a TLS port: plain HTTP gets a 400, a truncated ClientHello and
// a client that never finishes the handshake are closed (the latter at
// handshake_timeout). Nothing is logged at error level, the warnings are
// rate-limited to one per second, and goleak (TestMain) sees no goroutine
// left behind.
func TestTLSBadInputIsRefusedQuietly(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	cert, key := leaf.CertFile, leaf.KeyFile
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig(tlsBlock(cert, key, "handshake_timeout = \"300ms\""), "", be.Addr()))

	out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 Bad Request") || !strings.Contains(out, "HTTPS") {
		t.Fatalf("plain HTTP on the TLS port: got %q", out)
	}

	// A ClientHello record header announcing 512 bytes, then 10 of them.
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 1, 2, 3, 4})
	_ = c.CloseWrite()
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("truncated ClientHello: %v", err)
	}

	// A client that connects and says nothing: closed at the timeout.
	s := p.dial(t, "vs")
	start := time.Now()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(s)
	if took := time.Since(start); took > 2*time.Second || (err != nil && !isReset(err)) {
		t.Fatalf("stalled handshake: closed after %s with %v, want ~300ms", took, err)
	}

	// A probe that connects and closes without a byte (a TCP health
	// check): counted apart, not a failure, not warned about.
	probe := p.dial(t, "vs")
	_ = probe.Close()

	socktest.WaitFor(t, 2*time.Second, "3 failed handshakes and 1 silent client", func() bool {
		st := p.srv.VirtualServer("vs").TLSStats()
		return st.Failed == 3 && st.Silent == 1
	})
	if n := p.logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("%d error-level log lines for expected garbage: %v", n, p.logs.FilterLevelExact(zapcore.ErrorLevel).All())
	}
	if n := p.logs.FilterMessage("TLS handshake failed").Len(); n != 1 {
		t.Fatalf("%d handshake warnings within a second, want 1 (rate-limited)", n)
	}
	if be.requests.Load() != 0 {
		t.Fatalf("member served %d requests", be.requests.Load())
	}
}

// Replacing the certificate files and reloading (SIGHUP): new handshakes
// get the new certificate; a TLS conn opened before keeps working.
func TestTLSReloadKeepsOpenConnections(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	cert, key, serial1 := leaf.CertFile, leaf.KeyFile, leaf.Serial
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig(tlsBlock(cert, key, "watch_interval = \"0s\""), "", be.Addr()))

	old, err := tls.Dial("tcp", p.addr("vs"), pki.ClientConfig("a.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	_ = old.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(old)
	if resp := getOn(t, old, br, 1); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != serial1 {
		t.Fatalf("serial %d, want %d", got, serial1)
	}

	renewed := pki.Issue(t, "a", "a.test", testpki.Options{RSA: true}) // same files, new RSA key and serial
	serial2 := renewed.Serial
	if err := p.srv.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	_, _, cs := tlsGet(t, p.addr("vs"), pki.ClientConfig("a.test"))
	if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != serial2 {
		t.Fatalf("after reload a new conn got serial %d, want %d", got, serial2)
	}
	if resp := getOn(t, old, br, 2); resp.StatusCode != 200 {
		t.Fatalf("the conn opened before the reload: status %d", resp.StatusCode)
	}

	// A broken key file: the reload fails naming it, the certificate in
	// service stays.
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.ReloadCertificates(); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("reload of a broken key: %v, want an error naming %s", err, key)
	}
	if _, _, cs := tlsGet(t, p.addr("vs"), pki.ClientConfig("a.test")); cs.PeerCertificates[0].SerialNumber.Int64() != serial2 {
		t.Fatal("a failed reload changed the certificate in service")
	}
}

// TLS to a real nginx (OpenSSL sends its TLS 1.3 session tickets after the
// client's Finished, so they wait on every fresh idle conn): a warm pool
// conn with the tickets pending is reused, not called stale, and the
// requests ride pooled TLS conns.
func TestTLSToRealNginxMember(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "member", "member.test", testpki.Options{})
	addr := startNginxServer(t, "keepalive_timeout 60s; keepalive_requests 100000;", " ssl",
		fmt.Sprintf("ssl_certificate %s; ssl_certificate_key %s; ssl_protocols TLSv1.3;", leaf.CertFile, leaf.KeyFile))
	p := startProxy(t, httpConfig("", fmt.Sprintf("min_idle = 1\n\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\n", ca.File), addr))
	ms := p.srv.Pool("p").Members()[0]
	socktest.WaitFor(t, 3*time.Second, "the warm conn", func() bool { return ms.Stats().TLSHandshakes == 1 })
	waitSocketToward(t, addr, "nginx's session tickets unread on the warm conn", func(s sockopt.Socket) bool {
		return s.State == sockopt.StateEstablished && s.RecvQ > 0
	})
	cl := proxyClient(true)
	defer cl.CloseIdleConnections()
	for i := 0; i < 20; i++ {
		if !getOK(cl, "http://"+p.addr("vs")+"/", "nginx says hi\n") {
			t.Fatalf("request %d failed", i)
		}
	}
	lines := p.waitAccess(t, 20)
	if fieldString(lines[0], "reused") != "true" {
		t.Fatalf("the first request did not ride the warm TLS conn: %v", lines[0].ContextMap())
	}
	st := p.srv.VirtualServer("vs").http.reuser.Stats()[0]
	if st.StaleOnPeek != 0 || st.Opened > 2 || st.Reused != 20 {
		t.Fatalf("reuse stats %+v: want every request on a pooled conn, none stale", st)
	}
}

// An Upgrade (WebSocket) over TLS on both sides: the tunnel relays through
// both TLS conns, and the client's close_notify + FIN reaches the member as
// the end of its stream.
func TestTLSUpgradeTunnelsThroughTLSOnBothSides(t *testing.T) {
	ca := testpki.New(t)
	front := ca.Issue(t, "front", "front.test", testpki.Options{})
	back := ca.Issue(t, "member", "member.test", testpki.Options{})
	memberSawEOF := make(chan bool, 1)
	be := socktest.Start(t, func(raw *net.TCPConn) {
		c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{back.Pair}})
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "websocket" {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
		_, err = io.Copy(c, br) // echo the tunnel until the client's end
		memberSawEOF <- err == nil
	})
	p := startProxy(t, httpConfig(tlsBlock(front.CertFile, front.KeyFile, ""),
		fmt.Sprintf("\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\n", ca.File), be.Addr()))
	c, err := tls.Dial("tcp", p.addr("vs"), ca.ClientConfig("front.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	big := strings.Repeat("x", 100<<10) // several TLS records each way
	for _, msg := range []string{"frame one", big} {
		go func() { _, _ = c.Write([]byte(msg)) }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("tunnel echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	_ = c.CloseWrite()
	select {
	case clean := <-memberSawEOF:
		if !clean {
			t.Fatal("the member's stream ended with an error, not the client's end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's close_notify + FIN never reached the member")
	}
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("after the member closed: %v", err)
	}
}

// A member that requires a client certificate: the pool's cert/key is
// presented and verified by the member; without it the member refuses and
// the client gets 502.
func TestTLSClientCertificateTowardMembers(t *testing.T) {
	ca := testpki.New(t)
	server := ca.Issue(t, "member", "member.test", testpki.Options{})
	client := ca.Issue(t, "tether-client", "tether.test", testpki.Options{Client: true})
	var verified atomic.Int64
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == "tether.test" {
			verified.Add(1)
		}
		_, _ = io.WriteString(w, "ok")
	}, func(s *http.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{server.Pair},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}
	})
	poolTLS := fmt.Sprintf("\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\n", ca.File)
	with := startProxy(t, httpConfig("", poolTLS+fmt.Sprintf("cert = %q\nkey = %q\n", client.CertFile, client.KeyFile), be.Addr()))
	if out := rawExchange(t, with.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 200 OK") {
		t.Fatalf("with the client certificate: %q", out)
	}
	if verified.Load() != 1 {
		t.Fatalf("member verified tether's certificate %d times, want 1", verified.Load())
	}
	without := startProxy(t, httpConfig("", poolTLS, be.Addr()))
	if out := rawExchange(t, without.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 502 ") {
		t.Fatalf("without a client certificate: %q, want 502", out)
	}
	if be.requests.Load() != 1 {
		t.Fatalf("member served %d requests, want 1", be.requests.Load())
	}
}

// The idle timeout holds on a TLS relay (tcp mode): nothing moves, both
// sides are cut at the timeout and reset (reset_on_timeout), and bytes
// that keep flowing through TLS keep it open meanwhile.
func TestTLSRelayIdleTimeout(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "a", "a.test", testpki.Options{})
	memberSaw := make(chan error, 1)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until cut
		_, err := c.Read(make([]byte, 1))
		memberSaw <- err
	})
	p := startProxy(t, tcpConfig(idleProfiles, "client_profile = \"short\"\nserver_profile = \"short\"\n"+tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	c, err := tls.Dial("tcp", p.addr("vs"), ca.ClientConfig("a.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 6; i++ { // 6 x 150 ms of traffic: longer than the 400 ms timeout
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if !isReset(err) {
		t.Fatalf("client read after the idle timeout: %v, want a reset", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("cut after %s of silence, want about 400ms", took)
	}
	select {
	case err := <-memberSaw:
		if !isReset(err) && err != io.EOF {
			t.Fatalf("member: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("member side was not closed")
	}
	if fc := fieldString(p.waitAccess(t, 1)[0], "closed_first"); fc != "tether idle-timeout" {
		t.Fatalf("closed_first = %q", fc)
	}
}

// Over TLS, a request head larger than one read and a body of many
// records arrive whole, twice on one keepalive conn.
func TestTLSLargeRequestsOnAKeepaliveConn(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "a", "a.test", testpki.Options{})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %d", len(r.Header.Get("X-Big")), len(b))
	}, nil)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	c, err := tls.Dial("tcp", p.addr("vs"), ca.ClientConfig("a.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	hdr, body := strings.Repeat("h", 3000), strings.Repeat("b", 300<<10)
	for i := 0; i < 2; i++ {
		go fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\nContent-Length: %d\r\n\r\n%s", hdr, len(body), body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("%d %d", len(hdr), len(body)); string(got) != want {
			t.Fatalf("request %d: member saw %q, want %q", i, got, want)
		}
	}
}

// A member that accepts TCP but never answers the TLS handshake cannot hang
// a client: the pool's handshake_timeout ends each attempt, the client gets
// 502, and the access line names the handshake.
func TestTLSToMemberThatStallsTheHandshakeIs502(t *testing.T) {
	ca := testpki.New(t)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		_, _ = io.Copy(io.Discard, c) // reads the ClientHello, answers nothing
	})
	p := startProxy(t, httpConfig("", fmt.Sprintf("\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\nhandshake_timeout = \"300ms\"\n", ca.File), be.Addr()))
	start := time.Now()
	out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	took := time.Since(start)
	if !strings.HasPrefix(out, "HTTP/1.1 502 ") {
		t.Fatalf("got %q, want 502", out)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("answered after %s, want about 300ms", took)
	}
	if e := fieldString(p.waitAccess(t, 1)[0], "error"); !strings.Contains(e, "TLS handshake") {
		t.Fatalf("access error %q does not name the TLS handshake", e)
	}
	if n := be.Accepted(); n != 1 {
		t.Fatalf("member saw %d connects, want 1 (a member is tried once per request)", n)
	}
}

// A handshake cut by shutdown is the proxy's doing: not counted as a failed
// handshake, not warned about.
func TestTLSHandshakeCutByShutdownIsNotAFailure(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "a", "a.test", testpki.Options{})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	c := p.dial(t, "vs") // says nothing: its handshake waits (handshake_timeout 10 s)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	socktest.WaitFor(t, 2*time.Second, "the conn to be accepted", func() bool { return p.srv.VirtualServer("vs").Stats().Active == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	if st := p.srv.VirtualServer("vs").TLSStats(); st.Failed != 0 {
		t.Fatalf("TLS stats %+v: a handshake cut by shutdown counted as failed", st)
	}
	if n := p.logs.FilterMessage("TLS handshake failed").Len(); n != 0 {
		t.Fatalf("%d handshake warnings for a shutdown cut", n)
	}
}
