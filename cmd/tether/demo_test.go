package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tether demo end to end with short runs: its table shows the pooled
// virtual server opening far fewer member connections than the unpooled one
// under short client connections, the https one pooling as well, and it
// cleans up after itself (goleak in TestMain checks the goroutines).
func TestDemoShowsPoolingEndToEnd(t *testing.T) {
	html := filepath.Join(t.TempDir(), "demo.html")
	var out, errb bytes.Buffer
	code := cmdDemo(context.Background(), []string{"--duration", "400ms", "--concurrency", "4", "--html", html}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 12 && (f[0] == "oneconnect" || f[0] == "no-reuse" || f[0] == "https") {
			if _, err := strconv.ParseFloat(f[2], 64); err == nil { // a table row, not an explanation
				rows[f[0]+" "+f[1]] = f
			}
		}
	}
	t.Logf("demo output:\n%s", out.String())
	if len(rows) != 6 {
		t.Fatalf("want 6 table rows, got %d:\n%s", len(rows), out.String())
	}
	col := func(row string, i int) int {
		n, err := strconv.Atoi(rows[row][i])
		if err != nil {
			t.Fatalf("row %q column %d: %v", row, i, err)
		}
		return n
	}
	const clientConns, memberConns, errorsCol = 6, 7, 5
	for row := range rows {
		if col(row, errorsCol) != 0 {
			t.Errorf("%s: %d errors", row, col(row, errorsCol))
		}
	}
	pooled, unpooled := col("oneconnect short", memberConns), col("no-reuse short", memberConns)
	if clients := col("no-reuse short", clientConns); unpooled < clients-4 || clients < 20 {
		t.Fatalf("no-reuse short: %d member conns for %d client conns, want about one each", unpooled, clients)
	}
	if pooled*5 > unpooled || pooled > 8 {
		t.Fatalf("oneconnect short opened %d member conns vs %d without reuse: want far fewer (<= 8)", pooled, unpooled)
	}
	// Over TLS the pool works the same; short clients pay a handshake each,
	// so they do fewer requests than long ones.
	if pooledTLS := col("https short", memberConns); pooledTLS > 8 || col("https short", clientConns) < 10 {
		t.Fatalf("https short: %d member conns for %d client conns, want pooled (<= 8)", pooledTLS, col("https short", clientConns))
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Fatalf("html report: %v (%d bytes)", err, len(page))
	}
}

func TestDemoUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cmdDemo(context.Background(), []string{"--duration", "0s"}, &out, &errb); code != exitUsage {
		t.Fatalf("exit %d", code)
	}
}
