package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The smoke run re-executes this test binary as its members.
	if spec := os.Getenv(memberEnv); spec != "" {
		os.Exit(memberMain(spec))
	}
	goleak.VerifyTestMain(m)
}

// The whole program for about 20 s against the real binary: 10 periods
// of 2 s, member 1 killed at 4 s and member 2 at 12 s, each back 2 s
// later. The verdict itself may go either way on a busy machine; the test
// checks that the run completed and that every row holds sane figures.
func TestSoakSmokeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a real run of about 25 s")
	}
	jsonPath := filepath.Join(t.TempDir(), "soak.json")
	o, err := parseFlags([]string{"-duration", "20s", "-restart-every", "8s", "-window", "5s", "-sample", "2s", "-peak-time", "1s", "-json", jsonPath}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, log strings.Builder
	code := run(ctx, o, &out, &log)
	t.Logf("exit %d\n%s\n%s", code, out.String(), log.String())
	if code != 0 && code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out.String(), "soak: PASS") && !strings.Contains(out.String(), "soak: FAIL") {
		t.Fatalf("no verdict in the report")
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.PeakRPS < 100 || rep.Rate < 50 || rep.Rate > rep.PeakRPS {
		t.Errorf("peak %v req/s, rate %v", rep.PeakRPS, rep.Rate)
	}
	if len(rep.Rows) != 10 {
		t.Fatalf("%d rows, want 10", len(rep.Rows))
	}
	var requests, errs int64
	for _, r := range rep.Rows {
		requests += r.Requests
		errs += r.Errors
		switch {
		case r.Requests <= 0 || r.Due <= 0:
			t.Errorf("period %d: %d requests of %d due", r.Period, r.Requests, r.Due)
		case r.Probes < 1: // a busy machine, -race: probes late are skipped
			t.Errorf("period %d: %d probes", r.Period, r.Probes)
		case r.RSSMiB < 2 || r.RSSMiB > 1024:
			t.Errorf("period %d: RSS %v MiB", r.Period, r.RSSMiB)
		// The open loop's 64 keepalive conns, less those between
		// requests at a probe.
		case r.FDs < 32 || r.FDs > 2000:
			t.Errorf("period %d: %v fds", r.Period, r.FDs)
		case r.Goroutines < 32 || r.Goroutines > 5000:
			t.Errorf("period %d: %v goroutines", r.Period, r.Goroutines)
		case r.P99Ms <= 0 || r.P50Ms > r.P99Ms || r.P99Ms > r.MaxMs:
			t.Errorf("period %d: p50 %v p99 %v max %v ms", r.Period, r.P50Ms, r.P99Ms, r.MaxMs)
		case r.CPUPercent <= 0:
			t.Errorf("period %d: tether CPU %v%%", r.Period, r.CPUPercent)
		}
	}
	// All that was due was sent and ended (the last row takes the ones in
	// flight at the end).
	due := dueIn(rep.Rate, 0, 20*time.Second)
	if requests != due {
		t.Errorf("%d requests ended, %d were due", requests, due)
	}
	// Failures come only from the kills: the requests in flight on the
	// killed member's conns. A few per kill, not a share of the load.
	if errs > requests/100 {
		t.Errorf("%d errors in %d requests (%v)", errs, requests, rep.Errors)
	}
	var what []string
	for _, e := range rep.Events {
		what = append(what, e.What)
	}
	if got := strings.Join(what, ", "); got != "killed m1, m1 back, killed m2, m2 back" {
		t.Errorf("events: %s", got)
	}
	if rep.Rows[2].Events == nil || rep.Rows[2].Events[0] != "killed m1" {
		t.Errorf("period 3 (4-6 s) events: %v", rep.Rows[2].Events)
	}
	if rep.Verdict.WindowRows != 2 || len(rep.Verdict.Metrics) != 8 {
		t.Errorf("verdict: %+v", rep.Verdict)
	}
}
