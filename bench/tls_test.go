package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// tlsServer is an in-process HTTPS server (net/http), with a certificate
// for bench.test and 127.0.0.1 signed by a test CA, that counts the
// connections it accepted and the handshakes it completed.
type tlsServer struct {
	*httptest.Server
	conns, handshakes, resumed, requests atomic.Int64

	mu          sync.Mutex
	serverNames map[string]int
}

func startTLSServer(t testing.TB, ca *testpki.CA, edit func(*tls.Config)) *tlsServer {
	t.Helper()
	leaf := ca.Issue(t, "bench", "bench.test", testpki.Options{Names: []string{"127.0.0.1"}})
	s := &tlsServer{serverNames: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		w.Write(bytes.Repeat([]byte("b"), 64))
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected in some tests
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{leaf.Pair},
		VerifyConnection: func(cs tls.ConnectionState) error { // runs once per completed handshake, resumed ones too
			s.handshakes.Add(1)
			if cs.DidResume {
				s.resumed.Add(1)
			}
			s.mu.Lock()
			s.serverNames[cs.ServerName]++
			s.mu.Unlock()
			return nil
		},
	}
	if edit != nil {
		edit(s.TLS)
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsServer) url() string { return s.URL + "/x" }

func TestHTTPSShortDoesOneFullHandshakePerRequest(t *testing.T) {
	ca := testpki.New(t)
	s := startTLSServer(t, ca, nil)
	r := run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: 4, Requests: 100, CACert: ca.File})
	noErrors(t, r)
	if r.Protocol != "https" || r.Label != "https short" {
		t.Errorf("protocol %q label %q; want https, https short", r.Protocol, r.Label)
	}
	if r.OK != 100 || s.requests.Load() != 100 || r.ConnsOpened != 100 || s.conns.Load() != 100 {
		t.Errorf("ok %d (server saw %d), conns %d (server accepted %d); want 100 each", r.OK, s.requests.Load(), r.ConnsOpened, s.conns.Load())
	}
	tl := r.TLS
	if tl == nil {
		t.Fatal("no TLS figures")
	}
	if tl.Handshakes != 100 || s.handshakes.Load() != 100 || tl.Resumed != 0 || s.resumed.Load() != 0 {
		t.Errorf("handshakes %d resumed %d, server %d resumed %d; want 100 full", tl.Handshakes, tl.Resumed, s.handshakes.Load(), s.resumed.Load())
	}
	if tl.Version != "TLS 1.3" || !strings.HasPrefix(tl.CipherSuite, "TLS_") || tl.ALPN != "http/1.1" || tl.Group == "" {
		t.Errorf("negotiated %q %q group %q ALPN %q", tl.Version, tl.CipherSuite, tl.Group, tl.ALPN)
	}
	if tl.Handshake.P50 <= 0 || tl.Handshake.Max < tl.Handshake.P99 || tl.PerSecond <= 0 {
		t.Errorf("handshake %+v, %v/s", tl.Handshake, tl.PerSecond)
	}
	// Latency runs from the start of the attempt: connect + handshake + exchange.
	if tl.Handshake.P50 > r.Latency.Max || tl.HandshakeShare <= 0.1 || tl.HandshakeShare > 1 {
		t.Errorf("handshake p50 %v, latency max %v, share %v", tl.Handshake.P50, r.Latency.Max, tl.HandshakeShare)
	}
	if tl.ServerName != "" || !strings.HasPrefix(tl.Verify, "cacert ") || tl.ResumeEnabled || tl.MinVersion != TLS12 {
		t.Errorf("server name %q verify %q resume %v min %q", tl.ServerName, tl.Verify, tl.ResumeEnabled, tl.MinVersion)
	}
	if r.ClosedByClient != 100 {
		t.Errorf("closed by client %d; want 100", r.ClosedByClient)
	}
}

func TestHTTPSLongDoesOneHandshakePerConn(t *testing.T) {
	ca := testpki.New(t)
	s := startTLSServer(t, ca, nil)
	r := run(t, Options{Target: s.url(), Conn: ConnLong, Concurrency: 5, Requests: 500, CACert: ca.File})
	noErrors(t, r)
	if r.OK != 500 || s.requests.Load() != 500 || r.ConnsOpened != 5 || s.conns.Load() != 5 {
		t.Errorf("ok %d (server %d) conns %d (server %d); want 500, 5", r.OK, s.requests.Load(), r.ConnsOpened, s.conns.Load())
	}
	if r.TLS == nil || r.TLS.Handshakes != 5 || s.handshakes.Load() != 5 {
		t.Fatalf("TLS %+v, server handshakes %d; want 5", r.TLS, s.handshakes.Load())
	}
	want := min(1, r.TLS.Handshake.Mean.Seconds()*5/(r.Latency.Mean.Seconds()*500))
	if d := r.TLS.HandshakeShare - want; d > 1e-9 || d < -1e-9 || want <= 0 {
		t.Errorf("handshake share %v, want %v (5 handshakes over 500 requests)", r.TLS.HandshakeShare, want)
	}
	// requests-per-conn opens a conn, and so a handshake, every N requests
	r = run(t, Options{Target: s.url(), Conn: ConnLong, Concurrency: 5, Requests: 500, RequestsPerConn: 50, CACert: ca.File})
	noErrors(t, r)
	if r.ConnsOpened != 10 || r.TLS.Handshakes != 10 {
		t.Errorf("conns %d handshakes %d; want 10", r.ConnsOpened, r.TLS.Handshakes)
	}
}

// With --tls-resume the client keeps the tickets the server issues: every
// connection after a worker's first can resume, and both sides count the
// same resumed handshakes.
func TestHTTPSResumptionIsCounted(t *testing.T) {
	ca := testpki.New(t)
	for _, min := range []string{TLS12, TLS13} {
		t.Run(min, func(t *testing.T) {
			s := startTLSServer(t, ca, func(c *tls.Config) {
				if min == TLS12 {
					c.MaxVersion = tls.VersionTLS12
				}
			})
			const n, c = 60, 3
			r := run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: c, Requests: n, CACert: ca.File, TLSResume: true})
			noErrors(t, r)
			tl := r.TLS
			if tl.Handshakes != n || tl.Resumed < n-c || tl.Resumed != s.resumed.Load() || !tl.ResumeEnabled {
				t.Errorf("handshakes %d resumed %d (server %d), enabled %v; want %d, >= %d resumed", tl.Handshakes, tl.Resumed, s.resumed.Load(), tl.ResumeEnabled, n, n-c)
			}
			if want := float64(tl.Resumed) / n; tl.ResumedShare != want {
				t.Errorf("resumed share %v, want %v", tl.ResumedShare, want)
			}
			if tl.Version != "TLS "+min {
				t.Errorf("version %q, want TLS %s", tl.Version, min)
			}
		})
	}
}

// A certificate that does not verify fails every handshake at once: error
// kind tls with the verify message, no request sent, no hang.
func TestHTTPSWrongCAIsATLSErrorWithoutHang(t *testing.T) {
	ca, other := testpki.New(t), testpki.NewCA(t, testpki.CAOptions{Name: "another CA"})
	s := startTLSServer(t, ca, nil)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"other CA", Options{CACert: other.File}, "certificate signed by unknown authority"},
		{"system roots", Options{}, "certificate signed by unknown authority"},
		{"wrong name", Options{CACert: ca.File, SNI: "other.test"}, "other.test"},
		{"TLS 1.3 asked of a 1.2 server", Options{CACert: ca.File, TLSMin: TLS13}, "protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := s
			if strings.Contains(tc.name, "1.2 server") {
				target = startTLSServer(t, ca, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
			}
			before := target.requests.Load()
			o := tc.o
			o.Target, o.Conn, o.Concurrency, o.Requests = target.url(), ConnShort, 2, 20
			start := time.Now()
			r := run(t, o)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v", took)
			}
			if r.Errors[ErrTLS] != 20 || r.OK != 0 || len(r.Errors) != 1 || target.requests.Load() != before {
				t.Errorf("errors %v ok %d, server saw %d requests; want 20 tls errors", r.Errors, r.OK, target.requests.Load()-before)
			}
			if r.TLS == nil || r.TLS.Handshakes != 0 || r.ConnsOpened != 20 {
				t.Fatalf("TLS %+v conns %d", r.TLS, r.ConnsOpened)
			}
			var msgs []string
			var total int64
			for m, n := range r.TLS.Errors {
				msgs = append(msgs, m)
				total += n
			}
			if total != 20 || len(msgs) != 1 || !strings.Contains(msgs[0], tc.want) {
				t.Errorf("tls errors %v; want 20 of one message with %q", r.TLS.Errors, tc.want)
			}
			var out bytes.Buffer
			if err := WriteText(&out, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "TLS handshake failed 20 times: "+msgs[0]) {
				t.Errorf("text report lacks the message:\n%s", out.String())
			}
		})
	}
}

func TestHTTPSSNIAndInsecure(t *testing.T) {
	ca := testpki.New(t)
	s := startTLSServer(t, ca, nil)
	r := run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: 2, Requests: 10, CACert: ca.File, SNI: "bench.test"})
	noErrors(t, r)
	s.mu.Lock()
	names := s.serverNames[""]
	sni := s.serverNames["bench.test"]
	s.mu.Unlock()
	if sni != 10 || names != 0 || r.TLS.ServerName != "bench.test" {
		t.Errorf("server saw SNI bench.test %d times, none %d; result %q", sni, names, r.TLS.ServerName)
	}
	r = run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: 2, Requests: 10, Insecure: true})
	noErrors(t, r)
	var out bytes.Buffer
	if err := WriteText(&out, r); err != nil {
		t.Fatal(err)
	}
	if r.TLS.Verify != "insecure (not verified)" || !strings.Contains(out.String(), "WARNING: --insecure") {
		t.Errorf("verify %q; report:\n%s", r.TLS.Verify, out.String())
	}
}

func TestHTTPSGroupsAreOffered(t *testing.T) {
	ca := testpki.New(t)
	s := startTLSServer(t, ca, nil)
	for groups, want := range map[string]string{"": "X25519MLKEM768", "x25519": "X25519", "P256": "CurveP256"} {
		o := Options{Target: s.url(), Conn: ConnLong, Concurrency: 1, Requests: 2, CACert: ca.File}
		if groups != "" {
			o.TLSGroups = []string{groups}
		}
		r := run(t, o)
		noErrors(t, r)
		if r.TLS.Group != want {
			t.Errorf("--tls-groups %q: negotiated %q, want %q", groups, r.TLS.Group, want)
		}
	}
}

// The JSON report carries the TLS figures of each run and, for two runs,
// the handshake cost; the HTML report draws the handshake chart.
func TestHTTPSReportsHaveTheTLSFields(t *testing.T) {
	ca := testpki.New(t)
	s := startTLSServer(t, ca, nil)
	var rs []*Result
	for _, conn := range []string{ConnShort, ConnLong} {
		rs = append(rs, run(t, Options{Target: s.url(), Conn: conn, Label: conn, Concurrency: 2, Requests: 200, CACert: ca.File}))
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, rs...); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results []map[string]any `json:"results"`
		TLSCost map[string]any   `json:"tls_cost"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for i, r := range doc.Results {
		tl, ok := r["tls"].(map[string]any)
		if !ok {
			t.Fatalf("result %d has no tls object: %v", i, r)
		}
		for _, k := range []string{"handshakes", "resumed", "resumed_share", "handshakes_per_s", "handshake", "handshake_share",
			"version", "cipher_suite", "group", "alpn", "verify"} {
			if _, ok := tl[k]; !ok {
				t.Errorf("result %d: tls.%s missing", i, k)
			}
		}
		hs, _ := tl["handshake"].(map[string]any)
		for _, k := range []string{"p50_ns", "p99_ns", "max_ns"} {
			if v, _ := hs[k].(float64); v <= 0 {
				t.Errorf("result %d: tls.handshake.%s = %v", i, k, hs[k])
			}
		}
		if r["protocol"] != "https" || r["cpu_ns"] == nil {
			t.Errorf("result %d: protocol %v cpu %v", i, r["protocol"], r["cpu_ns"])
		}
	}
	if doc.Results[0]["tls"].(map[string]any)["handshakes"] != 200.0 || doc.Results[1]["tls"].(map[string]any)["handshakes"] != 2.0 {
		t.Errorf("handshakes short %v long %v; want 200, 2", doc.Results[0]["tls"], doc.Results[1]["tls"])
	}
	runs, _ := doc.TLSCost["runs"].([]any)
	if len(runs) != 2 || doc.TLSCost["rps_ratio"] == nil {
		t.Errorf("tls_cost %v", doc.TLSCost)
	}
	buf.Reset()
	if err := WriteText(&buf, rs...); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TLS handshakes", "handshake p99", "handshakes/s", "cipher suite", "TLS handshake cost, short vs long: 200 vs 2 handshakes"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := WriteHTML(&buf, "tls", rs...); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "<svg"); n != 5 || !strings.Contains(buf.String(), "TLS handshake time") {
		t.Errorf("HTML: %d charts, want 5 with the handshake chart", n)
	}
}

// Cancelling a run cuts connections in their handshake too.
func TestHTTPSCancelDuringHandshakesReturns(t *testing.T) {
	// A listener that accepts and never answers: every handshake stalls.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
		for _, c := range held {
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			mu.Lock()
			n := len(held)
			mu.Unlock()
			if n >= 2 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	r, err := Run(ctx, Options{Target: "https://" + ln.Addr().String() + "/", Concurrency: 2, Duration: time.Hour, Insecure: true, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Interrupted || r.ErrorCount() != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("interrupted %v errors %v after %v", r.Interrupted, r.Errors, time.Since(start))
	}
}

func TestTLSOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Target: "http://127.0.0.1:1/", CACert: "x.pem"}, "apply to https:// targets only"},
		{Options{Target: "127.0.0.1:1", TLSResume: true}, "apply to https:// targets only"},
		{Options{Target: "https://127.0.0.1:1/", TLSMin: "1.1"}, `--tls-min "1.1"`},
		{Options{Target: "https://127.0.0.1:1/", Insecure: true, CACert: "x.pem"}, "--insecure and --cacert"},
		{Options{Target: "https://127.0.0.1:1/", TLSGroups: []string{"x448"}}, `--tls-groups "x448"`},
		{Options{Target: "https://127.0.0.1:1/", SNI: "a b"}, `--sni "a b"`},
		{Options{Target: "ftp://127.0.0.1:1/"}, "only http:// and https://"},
	} {
		err := tc.o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
	for _, o := range []Options{
		{Target: "https://127.0.0.1/", TLSMin: TLS13, TLSGroups: []string{"X25519", "p256"}, SNI: "a.test", TLSResume: true},
		{Target: "https://127.0.0.1:8443/x", Insecure: true},
	} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	tg, err := resolve(context.Background(), Options{Target: "https://127.0.0.1/p"}.withDefaults())
	if err != nil || tg.addr.Port() != 443 || tg.host != "127.0.0.1" || !tg.tls || tg.path != "/p" {
		t.Errorf("https default port: %+v %v", tg, err)
	}
	if _, err := Run(context.Background(), Options{Target: "https://127.0.0.1:1/", CACert: filepath.Join(t.TempDir(), "none.pem")}); err == nil || !strings.Contains(err.Error(), "--cacert") {
		t.Errorf("missing --cacert file: %v", err)
	}
}
