package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// hstsTLSConn opens a keepalive TLS conn to addr; each call of the returned
// function sends raw (one request) and returns the response read with
// net/http's parser.
func hstsTLSConn(t testing.TB, addr string, cfg *tls.Config) func(raw string) *http.Response {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	return func(raw string) *http.Response {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
}

// [tls.hsts] sets Strict-Transport-Security on every response a TLS client
// gets: relayed ones (a member's own field replaced, so there is exactly
// one) and tether's own error responses.
func TestHSTSHeaderOnEveryTLSResponse(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/own" {
			w.Header().Set("Strict-Transport-Security", "max-age=5")
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	hsts := "[virtual_server.tls.hsts]\nmax_age = \"8760h\"\ninclude_subdomains = true\npreload = true\n"
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, hsts), "", be.Addr()))
	const want = "max-age=31536000; includeSubDomains; preload"
	do := hstsTLSConn(t, p.addr("vs"), pki.ClientConfig("a.test"))
	for _, path := range []string{"/", "/own", "/"} {
		resp := do("GET " + path + " HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if got := resp.Header.Values("Strict-Transport-Security"); resp.StatusCode != 200 || len(got) != 1 || got[0] != want {
			t.Fatalf("GET %s: %d, Strict-Transport-Security %q, want exactly [%q]", path, resp.StatusCode, got, want)
		}
	}
	// tether's own answer: a request with two Content-Length fields is
	// refused before any member sees it.
	resp := hstsTLSConn(t, p.addr("vs"), pki.ClientConfig("a.test"))("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")
	if got := resp.Header.Values("Strict-Transport-Security"); resp.StatusCode != 400 || len(got) != 1 || got[0] != want {
		t.Fatalf("error response: %d, Strict-Transport-Security %q, want 400 with [%q]", resp.StatusCode, got, want)
	}
}

// Without [tls.hsts] tether adds nothing and passes a member's field on.
func TestHSTSOffByDefaultPassesTheMembersField(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/own" {
			w.Header().Set("Strict-Transport-Security", "max-age=5")
		}
	}, nil)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	do := hstsTLSConn(t, p.addr("vs"), pki.ClientConfig("a.test"))
	if got := do("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").Header.Values("Strict-Transport-Security"); len(got) != 0 {
		t.Fatalf("hsts is off, got %q", got)
	}
	if got := do("GET /own HTTP/1.1\r\nHost: a.test\r\n\r\n").Header.Values("Strict-Transport-Security"); len(got) != 1 || got[0] != "max-age=5" {
		t.Fatalf("the member's field: got %q", got)
	}
}

// HSTS costs no allocation per request: a keepalive TLS conn's steady
// state allocates as much with [tls.hsts] as without (the TLS layers, the
// test's client included, are what allocates, if anything).
func TestHSTSAddsNoAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under -race")
	}
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	be := answer64Member(t)
	allocs := func(hsts string) float64 {
		toml := strings.Replace(httpConfig("[virtual_server.http]\nmax_requests = 0"+tlsBlock(leaf.CertFile, leaf.KeyFile, hsts), "", be.Addr()),
			"level = \"debug\"", "level = \"debug\"\naccess = false", 1)
		p := startProxy(t, toml)
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.addr("vs"), pki.ClientConfig("a.test"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
		br := bufio.NewReader(c)
		body := make([]byte, 64)
		sawHSTS := false
		roundTrip := func() {
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					t.Fatal(err)
				}
				if len(line) == 2 {
					break
				}
				if len(line) > 26 && string(line[:26]) == "Strict-Transport-Security:" {
					sawHSTS = true
				}
			}
			if _, err := io.ReadFull(br, body); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 50; i++ {
			roundTrip()
		}
		if sawHSTS != (hsts != "") {
			t.Fatalf("hsts %q: header seen %v", hsts, sawHSTS)
		}
		return testing.AllocsPerRun(500, roundTrip)
	}
	without := allocs("")
	with := allocs("[virtual_server.tls.hsts]\n")
	t.Logf("allocations per request over TLS: %v without hsts, %v with", without, with)
	if with > without {
		t.Fatalf("hsts adds allocations: %v per request with, %v without", with, without)
	}
}
