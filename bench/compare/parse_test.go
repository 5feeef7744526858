package main

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/sockopt"
)

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == echoFlag { // a run's echo backend (os.Executable is this test binary)
		os.Exit(echoMain(os.Args[2]))
	}
	goleak.VerifyTestMain(m)
}

// The testdata files are real output of the tools, captured on this kind
// of machine (wrk 4.1.0, ab 2.3, redis-benchmark 7.0.15, iperf 3.12,
// tether bench, nginx 1.22 stub_status, Linux 6.x /proc).
func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestParseWrkReadsCountsLatencyAndErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want wrkResult
	}{
		{"wrk-latency.txt", wrkResult{Requests: 71421, Seconds: 1.10, RPS: 64954.22, P50: 111 * time.Microsecond, P99: 389 * time.Microsecond}},
		{"wrk-close.txt", wrkResult{Requests: 15201, Seconds: 1.10, RPS: 13819.20}}, // no --latency: no percentiles
		{"wrk-errors.txt", wrkResult{Requests: 53010, Seconds: 1.02, RPS: 51944.31, P50: 1020 * time.Microsecond, P99: 11870 * time.Microsecond,
			ErrConnect: 105, Non2xx: 53010}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := parseWrk(testdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !near(got.Seconds, tc.want.Seconds) || !near(got.RPS, tc.want.RPS) {
				t.Errorf("seconds %v rps %v, want %v %v", got.Seconds, got.RPS, tc.want.Seconds, tc.want.RPS)
			}
			got.Seconds, got.RPS = tc.want.Seconds, tc.want.RPS
			if got != tc.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tc.want)
			}
		})
	}
	if w, _ := parseWrk(testdata(t, "wrk-errors.txt")); w.errors() != 105+53010 {
		t.Errorf("errors() = %d, want connect + non-2xx", w.errors())
	}
}

func TestParseWrkRejectsOutputWithoutResults(t *testing.T) {
	if _, err := parseWrk("unable to connect to 127.0.0.1:23459 Connection refused\n"); err == nil {
		t.Fatal("want an error for wrk's refusal message")
	}
}

func TestParseIperf3ReadsTheReceiverSum(t *testing.T) {
	got, err := parseIperf3([]byte(testdata(t, "iperf3.json")))
	if err != nil {
		t.Fatal(err)
	}
	if !near(got.Gbps, 19.059356363996334) || !near(got.Seconds, 1.000087) {
		t.Errorf("parseIperf3 = %+v, want 19.06 Gbit/s over 1.000087 s", got)
	}
	if _, err := parseIperf3([]byte(`{"error": "unable to connect to server: Connection refused"}`)); err == nil {
		t.Error("iperf3's error document: want an error")
	}
}

func TestParseRedisCSVReadsSetAndGet(t *testing.T) {
	got, err := parseRedisCSV(testdata(t, "redis.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !near(got["SET"], 57142.86) || !near(got["GET"], 55555.56) {
		t.Errorf("parseRedisCSV = %v", got)
	}
	if _, err := parseRedisCSV(`"test","rps"` + "\n"); err == nil {
		t.Error("header only: want an error")
	}
}

func TestParseAbReadsCountsAndFailures(t *testing.T) {
	got, err := parseAb(testdata(t, "ab.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got != (abResult{Requests: 2000, Seconds: 0.170, RPS: 11796.49}) {
		t.Errorf("parseAb = %+v", got)
	}
	got, err = parseAb(testdata(t, "ab-non2xx.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 500 || got.Non2xx != 500 || got.Failed != 0 {
		t.Errorf("parseAb (503s) = %+v, want 500 non-2xx", got)
	}
}

func TestParseTetherBenchFillsFigures(t *testing.T) {
	rs, err := parseTetherBench([]byte(testdata(t, "tether-bench.json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Conn != "short" {
		t.Fatalf("results = %d, conn %q", len(rs), rs[0].Conn)
	}
	f := figures{}
	putTetherBench(f, "x.", rs[0])
	for k, want := range map[string]float64{
		"x.requests": 200, "x.rps": 8549.713033156899, "x.conns_opened": 200, "x.ports_used": 200,
		"x.tw_client": 200, "x.p99_ms": 3.633, "x.gen_cpu_s": 0.01326, "x.errors": 0,
	} {
		if !near(f[k], want) {
			t.Errorf("%s = %v, want %v", k, f[k], want)
		}
	}
}

func TestParseStubStatusReadsAccepts(t *testing.T) {
	n, err := parseStubStatus(testdata(t, "stub_status.txt"))
	if err != nil || n != 17296 {
		t.Fatalf("accepts = %d, %v; want 17296", n, err)
	}
}

func TestParseProcStatReadsEachCPU(t *testing.T) {
	m, err := parseProcStat(testdata(t, "proc-stat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// cpu0 3509 0 1530 19288 13 0 7 9 0 0
	want0 := cpuLine{User: 3509 + 1530, Busy: 3509 + 1530 + 7 + 9, Total: 3509 + 1530 + 7 + 9 + 19288 + 13}
	if len(m) != 2 || m[0] != want0 {
		t.Errorf("cpu0 = %+v (of %d CPUs), want %+v", m[0], len(m), want0)
	}
	if m[1].Busy != 3769+1922+156+9 {
		t.Errorf("cpu1 busy = %d", m[1].Busy)
	}
}

func TestProcTicksCountsFieldsAfterTheCommandName(t *testing.T) {
	// A command name holding ") " must not shift the fields.
	line := "4242 (evil) S 1 (x)) R 1 1 0 0 -1 4194304 122 0 0 0 11 7 0 0 20 0 1 0 24515 3133440 417"
	n, err := procTicks(line)
	if err != nil || n != 18 {
		t.Fatalf("procTicks = %d, %v; want utime 11 + stime 7", n, err)
	}
	if _, err := procTicks("4242 no paren"); err == nil {
		t.Error("want an error without ')'")
	}
}

func TestNetstatFieldFindsTheNamedCounter(t *testing.T) {
	text := testdata(t, "netstat.txt")
	if n, ok := netstatField(text, "TcpExt", "TW"); !ok || n != 17535 {
		t.Errorf("TW = %d, %v; want 17535", n, ok)
	}
	if n, ok := netstatField(text, "TcpExt", "TCPTimeWaitOverflow"); !ok || n != 0 {
		t.Errorf("TCPTimeWaitOverflow = %d, %v; want 0", n, ok)
	}
	if _, ok := netstatField(text, "TcpExt", "NoSuchCounter"); ok {
		t.Error("an unknown counter was found")
	}
}

func TestLastCountReadsIdleconnsLines(t *testing.T) {
	out := "accepted 10\naccepted 250\nready 300\nclosed 2\ntls TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 http/1.1\n"
	if n, ok := lastCount(out, "accepted"); !ok || n != 250 {
		t.Errorf("accepted = %d, %v", n, ok)
	}
	if _, ok := lastCount("accepted 3\n", "ready"); ok {
		t.Error("ready found where there is none")
	}
	if got := tlsLine(out); got != "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 http/1.1" {
		t.Errorf("tlsLine = %q", got)
	}
}

func TestTimeWaitIsCountedOnTheSideThatClosedFirst(t *testing.T) {
	const front, back = 20001, 20002
	tw := func(lp, rp uint16) sockopt.Socket {
		return sockopt.Socket{State: sockopt.StateTimeWait,
			Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), lp), Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), rp)}
	}
	socks := []sockopt.Socket{
		tw(40000, front), tw(40001, front), // the client closed first
		tw(front, 40002),                                  // the proxy closed its client conn
		tw(40003, back),                                   // the proxy closed its backend conn
		tw(back, 40004), tw(back, 40005), tw(back, 40006), // the backend closed
		{State: sockopt.StateEstablished, Local: tw(40007, front).Local, Remote: tw(40007, front).Remote},
		tw(40008, 9999), // someone else's
	}
	if got, want := classifyTimeWait(socks, front, back), (twSides{Client: 2, Front: 1, Back: 1, Backend: 3}); got != want {
		t.Errorf("proxied: %+v, want %+v", got, want)
	}
	// direct: front == back, the client's closes are not "proxy back".
	if got, want := classifyTimeWait(socks, back, back), (twSides{Client: 1, Backend: 3}); got != want {
		t.Errorf("direct: %+v, want %+v", got, want)
	}
}

func TestSectionMediansRatiosAndGoals(t *testing.T) {
	s := newSection("x", "x", "tether", "haproxy")
	s.Ratios = []ratio{{Name: "tether/haproxy", Num: "tether", Den: "haproxy"}}
	for _, v := range []float64{100, 300, 200} {
		s.add("tether", figures{"rps": v})
	}
	for _, v := range []float64{100, 400} {
		s.add("haproxy", figures{"rps": v, "nan": math.NaN()})
	}
	s.Rows = []row{{Label: "rps", Unit: "req/s", Metric: "rps", Goal: ratioGoal("tether/haproxy", 0.9, false)},
		{Label: "none", Unit: "req/s", Metric: "missing", Goal: betterPeer("tether", false)}}
	s.finish()
	r := s.Rows[0]
	if *r.Values["tether"] != 200 || *r.Values["haproxy"] != 250 || *r.RatioVals["tether/haproxy"] != 0.8 {
		t.Errorf("medians %v %v, ratio %v; want 200, 250, 0.8", *r.Values["tether"], *r.Values["haproxy"], *r.RatioVals["tether/haproxy"])
	}
	if r.GoalMet == nil || *r.GoalMet {
		t.Errorf("goal >= 0.9x met = %v, want false", r.GoalMet)
	}
	if s.Rows[1].GoalMet != nil || s.Rows[1].Values["tether"] != nil {
		t.Error("a metric no round measured must read n/a, its goal unjudged")
	}
	if len(s.Samples["haproxy"]["nan"]) != 0 {
		t.Error("NaN was recorded")
	}
}

func TestBetterPeerTakesTheBetterOfHAProxyAndNginx(t *testing.T) {
	v := func(x float64) *float64 { return &x }
	g := betterPeer("tether", false)
	if met, ok := g.Check(map[string]*float64{"tether": v(10), "haproxy": v(9), "nginx": v(11)}); !ok || met {
		t.Error("10 against peers 9 and 11: want missed")
	}
	if met, ok := g.Check(map[string]*float64{"tether": v(10), "nginx": v(9)}); !ok || !met {
		t.Error("10 against nginx 9 alone: want met")
	}
	lower := betterPeer("tether", true)
	if met, ok := lower.Check(map[string]*float64{"tether": v(1.0), "haproxy": v(0.9), "nginx": v(1.2)}); !ok || met {
		t.Error("lower is better, 1.0 against 0.9 and 1.2: want missed")
	}
}

func TestThousandsSeparates(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -4200: "-4,200"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestParseSClientReadsWhatWasNegotiated(t *testing.T) {
	neg, verify := parseSClient(testdata(t, "s_client.txt"))
	if neg != "TLS 1.3 / TLS_AES_256_GCM_SHA384 / X25519 / http/1.1" || verify != "ok" {
		t.Errorf("parseSClient = %q, verify %q", neg, verify)
	}
	if neg, _ := parseSClient("connect: Connection refused\n"); neg != "? / ? / ? / ?" {
		t.Errorf("no handshake: %q", neg)
	}
}
