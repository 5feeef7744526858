package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// rowsOf makes rows from columns of figures: RSS MiB, fds, goroutines,
// p99 ms (one entry per period), each with requests and a probe.
func rowsOf(rss, fds, gor, p99 []float64) []row {
	rows := make([]row, len(rss))
	for i := range rows {
		rows[i] = row{Period: i + 1, Requests: 300000, Probes: 12, RSSMiB: rss[i], FDs: fds[i], Goroutines: gor[i], P99Ms: p99[i], CPUPercent: 60, MemberConns: 64}
	}
	return rows
}

func metricOf(t *testing.T, v verdict, name string) metricVerdict {
	t.Helper()
	for _, m := range v.Metrics {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no metric %q in %+v", name, v.Metrics)
	return metricVerdict{}
}

// A steady run (figures of a real 2 s-period run of this program): every
// mean within 10%, p99 far lower at the end (the first periods carried the
// peak measurement's backlog): it passes, p99 reported as lower.
func TestVerdictPassesASteadyRun(t *testing.T) {
	rows := rowsOf(
		[]float64{31.4, 30.8, 31.9, 32.3, 32.7, 32.2, 30.1, 33.7, 32.9, 32.0},
		[]float64{147, 143, 127, 140, 144, 142, 119, 135, 142, 143},
		[]float64{94, 94, 96, 91, 88, 87, 91, 87, 86, 85},
		[]float64{157, 73.47, 127, 53.89, 120, 20.83, 113, 20.37, 15.29, 42.24},
	)
	v := judge(rows, 2)
	if !v.Pass {
		t.Fatalf("a steady run failed: %+v", v)
	}
	rss := metricOf(t, v, "RSS")
	if rss.First < 31.09 || rss.First > 31.11 || rss.Last < 32.44 || rss.Last > 32.46 || rss.Word != "ok" {
		t.Errorf("RSS: %+v; want first 31.1, last 32.45, ok", rss)
	}
	if p := metricOf(t, v, "p99"); p.Word != "lower" || !p.Pass {
		t.Errorf("p99 %+v: want lower, passing", p)
	}
}

// RSS that grew from 24 to 29.8 MiB over 30 periods (a leak of 200 KiB a
// minute): the last window's mean, 29.4, is past 24.4*1.1+1 = 27.84.
func TestVerdictFailsAGrowingRSS(t *testing.T) {
	rss := make([]float64, 30)
	for i := range rss {
		rss[i] = 24 + 0.2*float64(i)
	}
	flat := func(v float64) []float64 {
		out := make([]float64, 30)
		for i := range out {
			out[i] = v
		}
		return out
	}
	v := judge(rowsOf(rss, flat(150), flat(100), flat(2.5)), 5)
	m := metricOf(t, v, "RSS")
	if v.Pass || m.Pass || m.Word != "GREW" {
		t.Fatalf("RSS %+v, verdict pass %v: want GREW and a failed verdict", m, v.Pass)
	}
	if m.First < 24.39 || m.First > 24.41 || m.Last < 29.39 || m.Last > 29.41 {
		t.Errorf("RSS means %v, %v; want 24.4 and 29.4", m.First, m.Last)
	}
	for _, name := range []string{"fds", "goroutines", "p99"} {
		if mm := metricOf(t, v, name); !mm.Pass || mm.Word != "ok" {
			t.Errorf("%s: %+v; want ok", name, mm)
		}
	}
}

// Tiny figures: 10% of 12 fds is 1.2, so 12 -> 20 fds would fail on
// scale alone; the slack (10) lets it pass. 40 -> 59 goroutines passes
// (allowed 40*1.1+20 = 64), 40 -> 65 does not. p99 0.4 -> 1.3 ms passes
// (allowed 1.44), 0.4 -> 1.5 ms fails.
func TestVerdictSlackForTinyFigures(t *testing.T) {
	cases := []struct {
		name         string
		fds, gor, p  [2]float64
		pass         bool
		failedMetric string
	}{
		{"within slack", [2]float64{12, 20}, [2]float64{40, 59}, [2]float64{0.4, 1.3}, true, ""},
		{"goroutines past slack", [2]float64{12, 20}, [2]float64{40, 65}, [2]float64{0.4, 1.3}, false, "goroutines"},
		{"fds past slack", [2]float64{12, 24}, [2]float64{40, 41}, [2]float64{0.4, 0.4}, false, "fds"},
		{"p99 past slack", [2]float64{12, 12}, [2]float64{40, 40}, [2]float64{0.4, 1.5}, false, "p99"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			two := func(v [2]float64) []float64 { return []float64{v[0], v[0], v[1], v[1]} }
			v := judge(rowsOf([]float64{20, 20, 20, 20}, two(c.fds), two(c.gor), two(c.p)), 2)
			if v.Pass != c.pass {
				t.Fatalf("pass %v, want %v: %+v", v.Pass, c.pass, v.Metrics)
			}
			for _, m := range v.Metrics {
				if m.Judged && m.Pass == (m.Name == c.failedMetric) {
					t.Errorf("%s: pass %v (%+v)", m.Name, m.Pass, m)
				}
			}
		})
	}
}

// A verdict needs two whole windows of periods that each had requests and
// probes.
func TestVerdictNeedsTwoWindowsWithData(t *testing.T) {
	four := []float64{1, 1, 1, 1}
	if v := judge(rowsOf(four[:3], four[:3], four[:3], four[:3]), 2); v.Pass || len(v.Notes) == 0 {
		t.Errorf("3 rows, windows of 2: %+v; want a failed verdict with a note", v)
	}
	rows := rowsOf(four, four, four, four)
	rows[3].Requests = 0
	if v := judge(rows, 2); v.Pass || len(v.Notes) == 0 {
		t.Errorf("a period without requests: %+v; want a failed verdict with a note", v)
	}
}

// The report's JSON holds no NaN (a change from 0 errors is null), and
// the printed verdict says PASS or FAIL.
func TestReportJSONAndTable(t *testing.T) {
	rows := rowsOf([]float64{30, 30, 30, 30}, []float64{140, 140, 140, 140}, []float64{90, 90, 90, 90}, []float64{2, 2, 2, 2})
	o, err := parseFlags([]string{"-quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep := newReport(o, "/tmp/tether")
	rep.Rows, rep.Rate = rows, 5000
	rep.Verdict = judge(rows, 2)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Verdict struct {
			Pass    bool `json:"pass"`
			Metrics []struct {
				Name   string   `json:"name"`
				Change *float64 `json:"change"`
			} `json:"metrics"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, m := range doc.Verdict.Metrics {
		if (m.Name == "errors") != (m.Change == nil) {
			t.Errorf("%s: change %v", m.Name, m.Change)
		}
	}
	var out strings.Builder
	rep.print(&out)
	for _, want := range []string{"| period |", "| RSS ", "soak: PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestMixHoldsInEveryHundred(t *testing.T) {
	for base := 0; base < 1000; base += 100 {
		var n [nKinds]int
		for i := base; i < base+100; i++ {
			n[kindOf(i)]++
		}
		if n != mix {
			t.Fatalf("requests %d-%d: %v, want %v", base, base+99, n, mix)
		}
	}
	// Spread: no more than 2 short conns in any 10 requests in a row.
	for i := 0; i < 100; i++ {
		s := 0
		for j := i; j < i+10; j++ {
			if k := kindOf(j); k == shortGet || k == tcpEcho {
				s++
			}
		}
		if s > 2 {
			t.Fatalf("requests %d-%d hold %d short conns", i, i+9, s)
		}
	}
}

func TestDueIn(t *testing.T) {
	if n := dueIn(5138, 0, time.Minute); n != 308280 {
		t.Errorf("a minute at 5138/s: %d", n)
	}
	var sum int64
	for k := range 30 {
		sum += dueIn(333.3, time.Duration(k)*time.Second, time.Duration(k+1)*time.Second)
	}
	if sum != dueIn(333.3, 0, 30*time.Second) {
		t.Errorf("periods sum to %d, the whole to %d", sum, dueIn(333.3, 0, 30*time.Second))
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 3*time.Minute || o.restartEvery != time.Minute || o.window != time.Minute || o.rows() != 3 || o.windowRows() != 1 {
		t.Errorf("-quick: %+v", o)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rows() != 30 || o.windowRows() != 5 || o.downTime() != 5*time.Second {
		t.Errorf("defaults: %d rows, windows of %d, down %v", o.rows(), o.windowRows(), o.downTime())
	}
	for _, bad := range [][]string{
		{"-duration", "8m", "-window", "5m"},
		{"-load", "0"},
		{"-sample", "100ms"},
		{"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
