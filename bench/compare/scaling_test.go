package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestCPUListHas(t *testing.T) {
	for _, c := range []struct {
		list string
		cpu  int
		want bool
	}{
		{"0-1", 1, true},
		{"0-1", 2, false},
		{"0,2", 1, false},
		{"0,2", 2, true},
		{"0-3,6", 6, true},
		{"4-7", 3, false},
		{"x", 0, true}, // unparsable: assumed to hold it (the warning errs safe)
	} {
		if got := cpuListHas(c.list, c.cpu); got != c.want {
			t.Errorf("cpuListHas(%q, %d) = %v, want %v", c.list, c.cpu, got, c.want)
		}
	}
}

func TestScalingProcsFlag(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil || len(o.scalingProcs) != 2 || o.scalingProcs[0] != 1 || o.scalingProcs[1] != 2 {
		t.Fatalf("default -scaling-procs: %v %v, want [1 2]", o, err)
	}
	if o, err := parseFlags([]string{"-scaling-procs", "1, 2,4"}); err != nil || len(o.scalingProcs) != 3 || o.scalingProcs[2] != 4 {
		t.Errorf("-scaling-procs 1,2,4: %v %v", o, err)
	}
	for _, bad := range []string{"2", "0,1", "1,x", ""} {
		if _, err := parseFlags([]string{"-scaling-procs", bad}); err == nil || !strings.Contains(err.Error(), "-scaling-procs") {
			t.Errorf("-scaling-procs %q: %v, want an error naming the flag", bad, err)
		}
	}
}

func TestMachineBusy(t *testing.T) {
	a := map[int]cpuLine{0: {Busy: 100, Total: 1000}, 1: {Busy: 100, Total: 1000}}
	b := map[int]cpuLine{0: {Busy: 200, Total: 1100}, 1: {Busy: 150, Total: 1100}}
	if got := machineBusy(a, b); got != 0.75 {
		t.Errorf("machineBusy = %v, want 0.75 (150 busy of 200 ticks)", got)
	}
	if got := machineBusy(nil, b); got != 0 {
		t.Errorf("machineBusy without a first reading = %v, want 0", got)
	}
}

// One short real run of the scaling scenario: both GOMAXPROCS columns
// served without errors, the ratio column is printed, the JSON holds one
// round of each, and the tether at GOMAXPROCS=2 ran with 2 Ps (more than
// one CPU-s per s is possible only then; not asserted: it depends on the
// machine's load).
func TestQuickScalingRunMeasuresBothGOMAXPROCS(t *testing.T) {
	if testing.Short() {
		t.Skip("a real run of about 10 s")
	}
	for _, p := range [][2]string{{"wrk", "wrk"}, {"nginx", "nginx"}, {"taskset", "util-linux"}} {
		socktest.Need(t, p[0], p[1])
	}
	sections := runQuick(t, "scaling", 2*time.Minute, "gomaxprocs=2/gomaxprocs=1", "| keepalive ", "| Connection: close ", "GOMAXPROCS=2 taskset -c")
	if len(sections) != 1 || sections[0].Key != "scaling" {
		t.Fatalf("sections: %+v", sections)
	}
	for _, col := range []string{"gomaxprocs=1", "gomaxprocs=2"} {
		for _, sc := range []string{"ka", "close"} {
			v := sections[0].Samples[col]
			if rps := v[sc+".rps"]; len(rps) != 1 || rps[0] <= 0 {
				t.Errorf("%s %s: req/s %v", col, sc, rps)
			}
			if e := v[sc+".errors"]; len(e) != 1 || e[0] != 0 {
				t.Errorf("%s %s: errors %v", col, sc, e)
			}
			if c := v[sc+".proxy_cpus"]; len(c) != 1 || c[0] <= 0 {
				t.Errorf("%s %s: proxy CPUs %v", col, sc, c)
			}
		}
	}
}
