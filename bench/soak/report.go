package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/tetherproxy/tether/bench"
)

// report is the whole run: settings, the peak, one row per period, the
// events and the verdict. It is also the JSON document.
type report struct {
	Date    string   `json:"date"`
	Host    string   `json:"host"`
	Kernel  string   `json:"kernel"`
	CPUs    int      `json:"cpus"`
	Go      string   `json:"go"`
	Tether  string   `json:"tether"` // the binary soaked
	Options settings `json:"options"`

	PeakRPS    float64 `json:"peak_rps"`    // closed loop, 0 with -rate
	PeakErrors int64   `json:"peak_errors"` // failed requests of the peak measurement
	Rate       float64 `json:"rate"`        // offered by the open loop, req/s
	Mix        []share `json:"mix"`

	Rows    []row     `json:"rows"`
	Events  []event   `json:"events"`
	Errors  errCounts `json:"errors"` // over the whole run, by cause
	Verdict verdict   `json:"verdict"`
	// Incomplete says why the run stopped before its end ("": it did
	// not); its verdict is then empty.
	Incomplete string   `json:"incomplete,omitempty"`
	Warnings   []string `json:"warnings"`
}

type settings struct {
	Duration     string  `json:"duration"`
	RestartEvery string  `json:"restart_every"`
	DownTime     string  `json:"down_time"`
	Window       string  `json:"window"`
	Sample       string  `json:"sample"`
	Load         float64 `json:"load"`
}

type share struct {
	Kind    string `json:"kind"`
	Percent int    `json:"percent"`
}

type errCounts map[string]int64

// row is one period. Latencies are of the requests that ended in it,
// counted from when each was due; RSS, fds, goroutines and member conns
// are means of the probes taken during it.
type row struct {
	Period        int       `json:"period"` // from 1
	StartS        float64   `json:"start_s"`
	EndS          float64   `json:"end_s"`
	Requests      int64     `json:"requests"`
	Due           int64     `json:"due"` // the requests the schedule made due in the period
	ByKind        []int64   `json:"by_kind"`
	Errors        int64     `json:"errors"`
	ErrorCauses   errCounts `json:"error_causes,omitempty"`
	P50Ms         float64   `json:"p50_ms"`
	P99Ms         float64   `json:"p99_ms"`
	MaxMs         float64   `json:"max_ms"`
	RSSMiB        float64   `json:"rss_mib"`
	RSSMaxMiB     float64   `json:"rss_max_mib"`
	FDs           float64   `json:"fds"`
	FDsMax        int       `json:"fds_max"`
	Goroutines    float64   `json:"goroutines"`
	GoroutinesMax int       `json:"goroutines_max"`
	MemberConns   float64   `json:"member_conns"`
	Probes        int       `json:"probes"`
	CPUPercent    float64   `json:"cpu_percent"` // tether's user+system CPU over the period, % of one core
	Events        []string  `json:"events,omitempty"`
}

// event is a member killed or started again.
type event struct {
	AtS  float64 `json:"at_s"`
	What string  `json:"what"`
}

// The verdict's rule: the last window's mean must not exceed the first
// window's mean by more than growthBound of it plus the metric's absolute
// slack. The slack keeps tiny values honest: 10% of 40 goroutines is 4,
// less than one client conn's worth coming and going at the wrong moment.
const growthBound = 0.10

// judged are the metrics the verdict judges, with their slack.
var judged = []struct {
	name, unit string
	slack      float64
	get        func(r row) float64
}{
	{"RSS", "MiB", 1, func(r row) float64 { return r.RSSMiB }},
	{"fds", "", 10, func(r row) float64 { return r.FDs }},
	{"goroutines", "", 20, func(r row) float64 { return r.Goroutines }},
	{"p99", "ms", 1, func(r row) float64 { return r.P99Ms }},
}

// shown are figures the verdict reports but does not judge.
var shown = []struct {
	name, unit string
	get        func(r row) float64
}{
	{"requests", "/period", func(r row) float64 { return float64(r.Requests) }},
	{"errors", "/period", func(r row) float64 { return float64(r.Errors) }},
	{"tether CPU", "%", func(r row) float64 { return r.CPUPercent }},
	{"member conns", "", func(r row) float64 { return r.MemberConns }},
}

type verdict struct {
	Pass       bool            `json:"pass"`
	WindowRows int             `json:"window_rows"`
	Metrics    []metricVerdict `json:"metrics"`
	Notes      []string        `json:"notes,omitempty"`
}

type metricVerdict struct {
	Name    string  `json:"name"`
	Unit    string  `json:"unit"`
	First   float64 `json:"first"`  // mean over the first window
	Last    float64 `json:"last"`   // mean over the last window
	Change  float64 `json:"change"` // last/first - 1 (NaN when first is 0)
	Judged  bool    `json:"judged"`
	Slack   float64 `json:"slack,omitempty"`
	Allowed float64 `json:"allowed,omitempty"` // the largest last that passes
	Pass    bool    `json:"pass"`
	Word    string  `json:"word"` // ok, lower, GREW; info for what is not judged
}

// MarshalJSON writes Change as null when it is not a number.
func (m metricVerdict) MarshalJSON() ([]byte, error) {
	type plain metricVerdict
	p := struct {
		plain
		Change *float64 `json:"change"`
	}{plain: plain(m)}
	if !math.IsNaN(m.Change) && !math.IsInf(m.Change, 0) {
		p.Change = &m.Change
	}
	return json.Marshal(p)
}

// judge compares the mean of the first n rows with the mean of the last n.
func judge(rows []row, n int) verdict {
	v := verdict{WindowRows: n, Pass: true}
	if n < 1 || len(rows) < 2*n {
		v.Pass = false
		v.Notes = append(v.Notes, fmt.Sprintf("%d rows: too few for two windows of %d", len(rows), n))
		return v
	}
	first, last := rows[:n], rows[len(rows)-n:]
	for _, w := range [][]row{first, last} {
		for _, r := range w {
			if r.Requests == 0 || r.Probes == 0 {
				v.Pass = false
				v.Notes = append(v.Notes, fmt.Sprintf("period %d has no requests or no probe of tether: nothing to judge", r.Period))
			}
		}
	}
	for _, j := range judged {
		a, b := mean(first, j.get), mean(last, j.get)
		m := metricVerdict{Name: j.name, Unit: j.unit, First: a, Last: b, Change: b/a - 1, Judged: true, Slack: j.slack}
		m.Allowed = a*(1+growthBound) + j.slack
		m.Pass = b <= m.Allowed
		switch {
		case !m.Pass:
			m.Word = "GREW"
			v.Pass = false
		case b < a*(1-growthBound)-j.slack:
			m.Word = "lower"
		default:
			m.Word = "ok"
		}
		v.Metrics = append(v.Metrics, m)
	}
	for _, s := range shown {
		a, b := mean(first, s.get), mean(last, s.get)
		v.Metrics = append(v.Metrics, metricVerdict{Name: s.name, Unit: s.unit, First: a, Last: b, Change: b/a - 1, Pass: true, Word: "info"})
	}
	return v
}

func mean(rows []row, get func(row) float64) float64 {
	var s float64
	for _, r := range rows {
		s += get(r)
	}
	return s / float64(len(rows))
}

// print writes the settings, the per-period table, the events and the
// verdict.
func (rep *report) print(w io.Writer) {
	o := rep.Options
	fmt.Fprintf(w, "\nsoak: %s at %.0f req/s", o.Duration, rep.Rate)
	if rep.PeakRPS > 0 {
		fmt.Fprintf(w, " (%.0f%% of the closed-loop peak of the mix, %.0f req/s)", o.Load*100, rep.PeakRPS)
	}
	fmt.Fprintf(w, "; a member killed every %s, down %s; rows of %s\n", o.RestartEvery, o.DownTime, o.Sample)
	var mixes []string
	for _, m := range rep.Mix {
		mixes = append(mixes, fmt.Sprintf("%d%% %s", m.Percent, m.Kind))
	}
	fmt.Fprintf(w, "mix: %s; latency from when each request was due (open loop)\n", strings.Join(mixes, ", "))
	fmt.Fprintf(w, "tether: %s (%s, %d CPUs, %s)\n\n", rep.Tether, rep.Kernel, rep.CPUs, rep.Go)
	hdr := []string{"period", "end", "requests", "due", "errors", "p50 ms", "p99 ms", "max ms", "RSS MiB", "fds", "goroutines", "member conns", "CPU %", "events"}
	var body [][]string
	for _, r := range rep.Rows {
		body = append(body, []string{
			fmt.Sprint(r.Period), fmtSeconds(r.EndS), fmt.Sprint(r.Requests), fmt.Sprint(r.Due), fmt.Sprint(r.Errors),
			fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), fmt.Sprintf("%.1f", r.RSSMiB), fmt.Sprintf("%.0f", r.FDs),
			fmt.Sprintf("%.0f", r.Goroutines), fmt.Sprintf("%.0f", r.MemberConns), fmt.Sprintf("%.0f", r.CPUPercent),
			strings.Join(r.Events, "; "),
		})
	}
	bench.WriteMarkdownTable(w, hdr, body, 1, true)
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\nerrors over the run: %s\n", rep.Errors)
	}
	for _, s := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	v := rep.Verdict
	if rep.Incomplete != "" {
		fmt.Fprintf(w, "\nsoak: INCOMPLETE (%s): no verdict\n", rep.Incomplete)
		return
	}
	fmt.Fprintf(w, "\nverdict: the first %d and the last %d rows; a judged mean may grow by %.0f%% plus its slack\n\n", v.WindowRows, v.WindowRows, growthBound*100)
	body = nil
	for _, m := range v.Metrics {
		allowed := ""
		if m.Judged {
			allowed = fmt.Sprintf("≤ %s (+%s)", fmtFig(m.Allowed), fmtFig(m.Slack))
		}
		body = append(body, []string{m.Name, m.Unit, fmtFig(m.First), fmtFig(m.Last), fmtChange(m.Change), allowed, m.Word})
	}
	bench.WriteMarkdownTable(w, []string{"metric", "unit", "first", "last", "change", "allowed", "verdict"}, body, 2, true)
	for _, n := range v.Notes {
		fmt.Fprintf(w, "(%s)\n", n)
	}
	if v.Pass {
		fmt.Fprintf(w, "\nsoak: PASS\n")
	} else {
		fmt.Fprintf(w, "\nsoak: FAIL\n")
	}
}

func (e errCounts) String() string {
	keys := slices.Sorted(maps.Keys(e))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, e[k])
	}
	return strings.Join(parts, ", ")
}

func fmtSeconds(s float64) string {
	if s >= 60 && math.Mod(s, 60) == 0 {
		return fmt.Sprintf("%.0fm", s/60)
	}
	return fmt.Sprintf("%.0fs", s)
}

func fmtMs(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtFig(v float64) string {
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtChange(c float64) string {
	if math.IsNaN(c) || math.IsInf(c, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", c*100)
}

// writeJSON writes the report to path.
func (rep *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
