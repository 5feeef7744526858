package main

import (
	"bytes"
	"context"
	"encoding/json"
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
		{[]string{"https://127.0.0.1:1/"}, "only http:// URLs"},
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
