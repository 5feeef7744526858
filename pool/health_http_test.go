package pool

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// httpMember answers every request with the status line it is told to,
// and records the request lines it saw.
type httpMember struct {
	*socktest.Backend
	addr   string
	tls    *tls.Config  // speaks TLS when set
	status atomic.Value // string: the whole status line, "" = never answer

	mu    sync.Mutex
	lines []string
	hosts []string
}

func startHTTPMember(t *testing.T, status string) *httpMember {
	return startHTTPSMember(t, status, nil)
}

// startHTTPSMember is an httpMember behind TLS with conf (nil: plain).
func startHTTPSMember(t *testing.T, status string, conf *tls.Config) *httpMember {
	t.Helper()
	m := &httpMember{tls: conf}
	m.status.Store(status)
	m.Backend = socktest.Start(t, m.serve)
	m.addr = m.Addr()
	return m
}

// serve answers one conn, over TLS when the member speaks it.
func (m *httpMember) serve(tc *net.TCPConn) {
	var c net.Conn = tc
	if m.tls != nil {
		c = tls.Server(tc, m.tls)
	}
	defer c.Close() // over TLS: close_notify, then the FIN
	m.answer(c)
}

func (m *httpMember) answer(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	var host string
	for {
		h, err := br.ReadString('\n')
		if err != nil || h == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(h, "Host: "); ok {
			host = strings.TrimSpace(v)
		}
	}
	m.mu.Lock()
	m.lines = append(m.lines, strings.TrimSpace(line))
	m.hosts = append(m.hosts, host)
	m.mu.Unlock()
	status := m.status.Load().(string)
	if status == "" {
		_, _ = br.ReadByte() // never answer: wait until the checker gives up
		return
	}
	_, _ = c.Write([]byte(status + "\r\nContent-Length: 0\r\n\r\n"))
}

func httpHealth(path, expect string) config.Health {
	h := fastHealth(2, 2)
	h.Type = config.HealthHTTP
	h.Method, h.Path, h.ExpectStatus = "GET", path, expect
	h.StatusMin, h.StatusMax = 200, 399
	if expect == "204" {
		h.StatusMin, h.StatusMax = 204, 204
	}
	return h
}

// The http monitor asks for the configured path and follows the status:
// out of the expected range, no answer within the timeout, or a malformed
// status line each count as a failure; back in range brings the member up.
func TestHTTPHealthFollowsStatus(t *testing.T) {
	hm := startHTTPMember(t, "HTTP/1.1 200 OK")
	cfg := testPool(config.MethodRoundRobin, hm.addr)
	cfg.Health = httpHealth("/healthz", "200-399")
	p := startPool(t, cfg)
	m := p.Members()[0]
	socktest.WaitFor(t, 2*time.Second, "checks to run", func() bool { return m.Stats().Checks >= 2 })
	if m.State() != Up {
		t.Fatalf("member %v with 200 answers", m.State())
	}

	for _, bad := range []string{"HTTP/1.1 503 Service Unavailable", "", "SSH-2.0-OpenSSH_9.2"} {
		hm.status.Store(bad)
		socktest.WaitFor(t, 3*time.Second, "down on "+bad, func() bool { return m.State() == Down })
		hm.status.Store("HTTP/1.1 302 Found") // 3xx is healthy by default
		socktest.WaitFor(t, 3*time.Second, "up again after "+bad, func() bool { return m.State() == Up })
	}

	hm.mu.Lock()
	defer hm.mu.Unlock()
	if len(hm.lines) == 0 || hm.lines[0] != "GET /healthz HTTP/1.1" {
		t.Fatalf("request lines: %q", hm.lines)
	}
	if hm.hosts[0] != hm.addr {
		t.Fatalf("Host header %q, want the member address", hm.hosts[0])
	}
}

func TestHTTPHealthExactStatus(t *testing.T) {
	hm := startHTTPMember(t, "HTTP/1.1 200 OK")
	cfg := testPool(config.MethodRoundRobin, hm.addr)
	cfg.Health = httpHealth("/", "204")
	p := startPool(t, cfg)
	m := p.Members()[0]
	socktest.WaitFor(t, 3*time.Second, "down: 200 is not 204", func() bool { return m.State() == Down })
	hm.status.Store("HTTP/1.1 204 No Content")
	socktest.WaitFor(t, 3*time.Second, "up on 204", func() bool { return m.State() == Up })
}

// With pool TLS the http check speaks TLS: a member whose certificate
// verifies is up; one that does not verify is down (the handshake failed).
func TestHTTPHealthOverTLS(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "member", "member.test", testpki.Options{})
	hm := startHTTPSMember(t, "HTTP/1.1 200 OK", &tls.Config{Certificates: []tls.Certificate{leaf.Pair}})
	for _, tc := range []struct {
		name  string
		roots *testpki.CA
		want  MemberState
	}{{"verified", ca, Up}, {"unverified", testpki.New(t), Down}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testPool(config.MethodRoundRobin, hm.addr)
			cfg.Health = httpHealth("/healthz", "200-399")
			p := tlsPool(t, cfg, tc.roots.ClientConfig("member.test"))
			m := p.Members()[0]
			socktest.WaitFor(t, 3*time.Second, "checks to run", func() bool { return m.Stats().Checks >= 4 })
			if m.State() != tc.want {
				t.Fatalf("member %v, want %v (%+v)", m.State(), tc.want, m.Stats())
			}
		})
	}
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if len(hm.lines) == 0 || hm.lines[0] != "GET /healthz HTTP/1.1" {
		t.Fatalf("request lines over TLS: %q", hm.lines)
	}
}
