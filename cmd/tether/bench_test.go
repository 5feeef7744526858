package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func benchCLI(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmdBench(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func TestBenchUsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing target"},
		{[]string{"--duration", "1s", "--requests", "10", "http://127.0.0.1:1/"}, "--duration and --requests: give one"},
		{[]string{"--conn", "medium", "http://127.0.0.1:1/"}, `--conn "medium": must be short or long`},
		{[]string{"--compare", "--conn", "short", "http://127.0.0.1:1/"}, "--compare runs both"},
		{[]string{"--protocol", "udp", "127.0.0.1:1"}, `--protocol "udp"`},
		{[]string{"-c", "-3", "127.0.0.1:1"}, "--concurrency -3"},
		{[]string{"ftp://127.0.0.1:1/"}, "only http:// and https:// URLs"},
		{[]string{"--cacert", "ca.pem", "http://127.0.0.1:1/"}, "apply to https:// targets only"},
		{[]string{"--tls-min", "1.1", "https://127.0.0.1:1/"}, `--tls-min "1.1": must be 1.2 or 1.3`},
		{[]string{"--tls-groups", "x25519,x448", "https://127.0.0.1:1/"}, `--tls-groups "x448"`},
		{[]string{"--insecure", "--cacert", "ca.pem", "https://127.0.0.1:1/"}, "--insecure and --cacert"},
		{[]string{"127.0.0.1"}, "want host:port"},
		{[]string{"--header", "novalue", "http://127.0.0.1:1/"}, `--header "novalue"`},
		{[]string{"--no-such-flag", "http://127.0.0.1:1/"}, "flag provided but not defined"},
		{[]string{"http://127.0.0.1:1/", "http://127.0.0.1:2/"}, "one target, got 2"},
	} {
		code, out, errOut := benchCLI(context.Background(), tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("bench %q: exit %d, stderr %q, stdout %q; want exit 2 and %q", tc.args, code, errOut, out, tc.want)
		}
	}
}

// Not a terminal: no progress bar, no carriage return, no escape codes.
func TestBenchPrintsTableWithoutProgressBarWhenNotATerminal(t *testing.T) {
	s, n := countingServer(t)
	code, out, errOut := benchCLI(context.Background(), "-n", "200", "-c", "4", s.URL+"/", "--conn", "long") // flags after the target too
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, bad := range []string{"\r", "\x1b[", "█", "it/s"} {
		if strings.Contains(out+errOut, bad) {
			t.Errorf("output holds %q (a progress bar):\n%s%s", bad, out, errOut)
		}
	}
	if !strings.Contains(out, "requests/s") || !strings.Contains(out, "TIME_WAIT client side") || !strings.Contains(out, "behind a proxy") {
		t.Errorf("table:\n%s", out)
	}
	if got := n.Load(); got != 200 {
		t.Errorf("server saw %d requests, want 200", got)
	}
}

func TestBenchCompareJSONAndHTML(t *testing.T) {
	s, _ := countingServer(t)
	html := filepath.Join(t.TempDir(), "r.html")
	code, out, errOut := benchCLI(context.Background(), "--compare", "--json", "--html", html, "-c", "2", "-n", "40", s.URL+"/")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Results []struct {
			Label       string `json:"label"`
			OK          int64  `json:"ok"`
			ConnsOpened int    `json:"conns_opened"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(doc.Results) != 2 || doc.Results[0].Label != "short" || doc.Results[1].Label != "long" ||
		doc.Results[0].OK != 40 || doc.Results[1].OK != 40 || doc.Results[0].ConnsOpened != 40 || doc.Results[1].ConnsOpened != 2 {
		t.Errorf("results %+v", doc.Results)
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("html report: %v", err)
	}
}

func TestBenchCompareTableHasRatios(t *testing.T) {
	s, _ := countingServer(t)
	code, out, errOut := benchCLI(context.Background(), "--compare", "-c", "2", "-n", "40", s.URL+"/")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "long/short") || !strings.Contains(out, "x\n") {
		t.Errorf("no ratio column:\n%s", out)
	}
}

// Ctrl-C (ctx ends) stops a long run and still prints what was measured.
func TestBenchInterruptedStillPrints(t *testing.T) {
	s, n := countingServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for n.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	code, out, errOut := benchCLI(ctx, "-d", "1h", "-c", "2", s.URL+"/")
	if code != exitOK || !strings.Contains(out, "interrupted") || !strings.Contains(out, "requests/s") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
}

// httpsServer is an HTTPS test server and a PEM file of its certificate
// (httptest's, valid for 127.0.0.1 and example.com).
func httpsServer(t *testing.T) (s *httptest.Server, caFile string, requests *atomic.Int64) {
	var n atomic.Int64
	s = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, caFile, &n
}

// Every TLS flag parses and reaches the run: an https --compare verified
// with --cacert and --sni, TLS 1.3 only, x25519 only.
func TestBenchHTTPSCompareEndToEnd(t *testing.T) {
	s, ca, n := httpsServer(t)
	code, out, errOut := benchCLI(context.Background(), "--compare", "--json", "-c", "2", "-n", "40",
		"--cacert", ca, "--sni", "example.com", "--tls-min", "1.3", "--tls-groups", "x25519", s.URL+"/")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Results []struct {
			Label       string `json:"label"`
			Protocol    string `json:"protocol"`
			OK          int64  `json:"ok"`
			ConnsOpened int    `json:"conns_opened"`
			TLS         *struct {
				Handshakes int64  `json:"handshakes"`
				Resumed    int64  `json:"resumed"`
				Version    string `json:"version"`
				Cipher     string `json:"cipher_suite"`
				Group      string `json:"group"`
				ServerName string `json:"server_name"`
				MinVersion string `json:"min_version"`
				Handshake  struct {
					P50 int64 `json:"p50_ns"`
					P99 int64 `json:"p99_ns"`
				} `json:"handshake"`
			} `json:"tls"`
		} `json:"results"`
		TLSCost *struct {
			Runs []struct {
				Handshakes int64 `json:"handshakes"`
			} `json:"runs"`
		} `json:"tls_cost"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(doc.Results) != 2 || n.Load() != 80 {
		t.Fatalf("%d results, server saw %d requests:\n%s", len(doc.Results), n.Load(), out)
	}
	for i, want := range []int64{40, 2} {
		r := doc.Results[i]
		if r.Protocol != "https" || r.OK != 40 || r.TLS == nil || r.TLS.Handshakes != want || int64(r.ConnsOpened) != want ||
			r.TLS.Version != "TLS 1.3" || r.TLS.Group != "X25519" || r.TLS.Cipher == "" || r.TLS.ServerName != "example.com" ||
			r.TLS.MinVersion != "1.3" || r.TLS.Handshake.P50 <= 0 || r.TLS.Resumed != 0 {
			t.Errorf("%s: %+v tls %+v; want %d handshakes", r.Label, r, r.TLS, want)
		}
	}
	if doc.TLSCost == nil || len(doc.TLSCost.Runs) != 2 || doc.TLSCost.Runs[0].Handshakes != 40 {
		t.Errorf("tls_cost %+v", doc.TLSCost)
	}
}

func TestBenchHTTPSInsecureWarnsAndResumes(t *testing.T) {
	s, _, _ := httpsServer(t)
	code, out, errOut := benchCLI(context.Background(), "--conn", "short", "--insecure", "--tls-resume", "-c", "1", "-n", "20", s.URL+"/")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "WARNING: --insecure") || !strings.Contains(out, "WARNING: --insecure") {
		t.Errorf("no --insecure warning:\nstderr %s\nstdout %s", errOut, out)
	}
	for _, want := range []string{"(https)", "TLS handshakes", "handshake p50", "handshake p99", "handshakes/s", "TLS version", "cipher suite",
		"19 (95%)", "resumption on"} { // the first of 20 handshakes is full, the rest resume
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchHTTPSBadCACertFileFails(t *testing.T) {
	s, _, _ := httpsServer(t)
	code, _, errOut := benchCLI(context.Background(), "--cacert", filepath.Join(t.TempDir(), "missing.pem"), "-n", "1", s.URL+"/")
	if code != exitError || !strings.Contains(errOut, "--cacert") {
		t.Errorf("exit %d, stderr %q; want 1 and --cacert", code, errOut)
	}
}
