// Package acmetest runs an in-process ACME CA for tests: pebble
// (github.com/letsencrypt/pebble/v2) with real challenge validation, and a
// tiny DNS server that resolves every name to 127.0.0.1, so that tests can
// use made-up names (a distinct one per test: certmagic keeps one
// process-wide map of the challenges in progress).
//
// Pebble's validation authority dials the ports given to Start on
// 127.0.0.1: listen first (127.0.0.1:0), then start the CA with that port.
//
// Some goroutines of pebble and certmagic never end, or end seconds after
// the test: a package using Start passes GoleakOptions to
// goleak.VerifyTestMain.
package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// CA is a running pebble.
type CA struct {
	// DirectoryURL is the ACME directory (config ACME.CA).
	DirectoryURL string
	// ServerCAFile is a PEM file with the certificate of pebble's own HTTPS
	// endpoint (config ACME.CARoot).
	ServerCAFile string
	// Root is the root that signs the issued certificates; RootFile holds
	// it as PEM.
	Root     *x509.Certificate
	RootFile string

	orders atomic.Int64
}

// Roots returns a pool holding Root, for clients of the issued
// certificates.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Root)
	return p
}

// Orders returns how many new-order requests the CA received.
func (c *CA) Orders() int64 { return c.orders.Load() }

// env is what pebble must read in its constructors: no random sleep before
// validating, no nonce rejected at random, no authorization reused (each
// test validates for real).
var env = map[string]string{
	"PEBBLE_VA_NOSLEEP":      "1",
	"PEBBLE_WFE_NONCEREJECT": "0",
	"PEBBLE_AUTHZREUSE":      "0",
}

var envOnce sync.Once

// Env sets the PEBBLE_* variables pebble reads in its constructors. Start
// calls it; call it yourself only to have them set earlier.
func Env() {
	envOnce.Do(func() {
		for k, v := range env {
			if err := os.Setenv(k, v); err != nil {
				panic("acmetest: " + err.Error())
			}
		}
	})
}

// GoleakOptions are for goleak.VerifyTestMain in a package using Start: the
// goroutines that outlive the tests for good, pebble's VA task loop and
// the rate limiter certmagic starts per CA and account, and certmagic's
// FileStorage lock refreshers, which notice an unlock only at their next
// 5 s tick.
func GoleakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	}
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago: the CA
// must know the port it validates on before the listener there exists
// (tether's virtual server, certmagic's http-01 answerer).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Options of a CA beyond the ports its validation authority dials.
type Options struct {
	// Validity of the certificates issued; 0 = pebble's default (90
	// days). A short one lets a test see a renewal.
	Validity time.Duration
}

// Start runs a CA whose validation authority dials vaHTTPPort (http-01) and
// vaTLSPort (tls-alpn-01) on 127.0.0.1; everything stops at the end of the
// test. Start fails the test when pebble did not take the PEBBLE_*
// settings.
func Start(t testing.TB, vaHTTPPort, vaTLSPort int) *CA {
	t.Helper()
	return StartWith(t, vaHTTPPort, vaTLSPort, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, vaHTTPPort, vaTLSPort int, o Options) *CA {
	t.Helper()
	Env()
	dir := t.TempDir()
	logs := &logSink{t: t}
	t.Cleanup(logs.stop)
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	resolver := startDNS(t)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1,
		map[string]ca.Profile{"default": {Description: "acmetest", ValidityPeriod: uint64(o.Validity / time.Second)}})
	vaImpl := va.New(logger, vaHTTPPort, vaTLSPort, false, resolver, store)
	front := wfe.New(logger, store, vaImpl, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	for _, want := range []string{
		"Disabling random VA sleeps",
		"Configured to reject 0% of good nonces",
		"authz reuse for each identifier 0% of the time",
	} {
		if !logs.contains(want) {
			t.Fatalf("acmetest: pebble did not take the PEBBLE_* settings (its log lacks %q)", want)
		}
	}

	c := &CA{Root: mustParse(t, authority.GetRootCert(0).DER)}
	handler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" {
			c.orders.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c.DirectoryURL = srv.URL + wfe.DirectoryPath
	c.ServerCAFile = writePEM(t, filepath.Join(dir, "pebble-https.pem"), srv.Certificate().Raw)
	c.RootFile = writePEM(t, filepath.Join(dir, "pebble-root.pem"), c.Root.Raw)
	return c
}

// startDNS serves A 127.0.0.1 for every name (and no AAAA) over TCP, the
// way pebble asks.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("acmetest: dns listen: %v", err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(answerLoopback)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func answerLoopback(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	for _, q := range req.Question {
		if q.Qtype == dns.TypeA {
			resp.Answer = append(resp.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
				A:   net.IPv4(127, 0, 0, 1),
			})
		}
	}
	_ = w.WriteMsg(resp)
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("acmetest: pebble root: %v", err)
	}
	return c
}

func writePEM(t testing.TB, file string, der []byte) string {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	return file
}

// logSink keeps pebble's log (to check its settings) and passes it to
// t.Log until the test ends; pebble's VA goroutines may log later.
type logSink struct {
	t       testing.TB
	mu      sync.Mutex
	buf     bytes.Buffer
	stopped bool
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return len(p), nil
	}
	if s.buf.Len() < 1<<16 {
		s.buf.Write(p)
	}
	s.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (s *logSink) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Contains(s.buf.Bytes(), []byte(sub))
}

func (s *logSink) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}
