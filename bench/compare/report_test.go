package main

import (
	"strings"
	"testing"
)

func TestBetterPeerRatioDividesByTheBetterOfEachRow(t *testing.T) {
	s := newSection("x", "x", "tether", "haproxy", "nginx")
	s.Ratios = []ratio{{Name: "tether/better peer", Num: "tether", Den: betterPeerCol}}
	s.add("tether", figures{"rps": 90, "p99": 2})
	s.add("haproxy", figures{"rps": 100, "p99": 4})
	s.add("nginx", figures{"rps": 120, "p99": 1})
	s.Rows = []row{
		{Label: "rps", Unit: "req/s", Metric: "rps", Goal: betterPeer("tether", false)},
		{Label: "p99", Unit: "ms", Metric: "p99", Lower: true},
	}
	s.finish()
	if got := *s.Rows[0].RatioVals["tether/better peer"]; !near(got, 0.75) {
		t.Errorf("higher is better: %v, want 90/120", got)
	}
	if got := *s.Rows[1].RatioVals["tether/better peer"]; !near(got, 2) {
		t.Errorf("lower is better: %v, want 2/1", got)
	}
	if want := "tether 90 vs better peer 120 (0.75x)"; s.Rows[0].GoalSays != want {
		t.Errorf("GoalSays %q, want %q", s.Rows[0].GoalSays, want)
	}
}

func TestColumnAndBoundGoals(t *testing.T) {
	v := func(x float64) *float64 { return &x }
	idleHTTP := colGoal("tether", "haproxy", true)
	if met, ok := idleHTTP.Check(map[string]*float64{"tether": v(2.1), "haproxy": v(1.2)}); !ok || met {
		t.Error("2.1 KiB against HAProxy's 1.2: want missed")
	}
	if _, ok := idleHTTP.Check(map[string]*float64{"tether": v(1)}); ok {
		t.Error("no HAProxy figure: want not judged")
	}
	idleTCP := boundGoal("tether", 8, "KiB", true)
	if idleTCP.Text != "tether <= 8.0 KiB" {
		t.Errorf("text %q", idleTCP.Text)
	}
	for x, want := range map[float64]bool{7.9: true, 8: true, 15.5: false} {
		if met, ok := idleTCP.Check(map[string]*float64{"tether": v(x)}); !ok || met != want {
			t.Errorf("%v KiB: met %v, want %v", x, met, want)
		}
	}
}

func TestPrintTargetsListsEveryGoalWithItsVerdict(t *testing.T) {
	a := newSection("http", "http", "tether", "haproxy", "nginx")
	a.add("tether", figures{"ka": 50})
	a.add("haproxy", figures{"ka": 60})
	a.add("nginx", figures{"ka": 40})
	a.Rows = []row{{Group: "keepalive", Label: "req per proxy CPU-s", Unit: "req/CPU-s", Metric: "ka", Goal: betterPeer("tether", false)}, {Label: "no goal", Metric: "ka"}}
	b := newSection("idle", "idle", "tether")
	b.add("tether", figures{"kib": 7})
	b.Rows = []row{{Label: "RSS", Unit: "KiB", Metric: "kib", Goal: boundGoal("tether", 8, "KiB", true)}, {Label: "unmeasured", Metric: "x", Goal: boundGoal("tether", 1, "KiB", true)}}
	for _, s := range []*section{a, b} {
		s.finish()
	}
	var out strings.Builder
	printTargets(&out, []*section{a, b})
	got := out.String()
	for _, want := range []string{"1 met, 1 MISSED, 1 not judged", "| http     | keepalive: req per proxy CPU-s | tether >= better peer | MISSED  | tether 50 vs better peer 60 (0.83x) |", "| idle     | RSS", "| met ", "| n/a "} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "no goal") {
		t.Errorf("a row without a goal is listed:\n%s", got)
	}
}
