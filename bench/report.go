package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// TimeWaitNote is printed under every report.
const TimeWaitNote = "TIME_WAIT target = the target's sockets toward this client; a target behind a proxy has its own back-side connections, not counted here."

// row is one line of the comparison table.
type row struct {
	name  string
	value func(r *Result) string
	ratio func(a, b *Result) string // nil = no ratio
}

func durRatio(f func(r *Result) time.Duration) func(a, b *Result) string {
	return func(a, b *Result) string { return ratio(float64(f(b)), float64(f(a))) }
}

func numRatio(f func(r *Result) float64) func(a, b *Result) string {
	return func(a, b *Result) string { return ratio(f(b), f(a)) }
}

func ratio(b, a float64) string {
	if a == 0 {
		return "-"
	}
	return strconv.FormatFloat(b/a, 'f', 2, 64) + "x"
}

func tableRows(rs []*Result) []row {
	d := func(f func(r *Result) time.Duration) func(*Result) string {
		return func(r *Result) string { return FormatDuration(f(r)) }
	}
	i := func(f func(r *Result) int64) func(*Result) string {
		return func(r *Result) string { return strconv.FormatInt(f(r), 10) }
	}
	fi := func(f func(r *Result) int64) func(*Result) float64 {
		return func(r *Result) float64 { return float64(f(r)) }
	}
	rows := []row{
		{"requests", i(func(r *Result) int64 { return r.Requests }), nil},
		{"ok", i(func(r *Result) int64 { return r.OK }), nil},
		{"errors", i(func(r *Result) int64 { return r.ErrorCount() }), nil},
	}
	for _, k := range errKinds {
		seen := false
		for _, r := range rs {
			seen = seen || r.Errors[k] > 0
		}
		if seen {
			k := k
			rows = append(rows, row{"  " + k, i(func(r *Result) int64 { return r.Errors[k] }), nil})
		}
	}
	rows = append(rows,
		row{"requests/s", func(r *Result) string { return strconv.FormatFloat(r.RPS, 'f', 1, 64) },
			numRatio(func(r *Result) float64 { return r.RPS })},
		row{"latency p50", d(func(r *Result) time.Duration { return r.Latency.P50 }), durRatio(func(r *Result) time.Duration { return r.Latency.P50 })},
		row{"latency p90", d(func(r *Result) time.Duration { return r.Latency.P90 }), durRatio(func(r *Result) time.Duration { return r.Latency.P90 })},
		row{"latency p99", d(func(r *Result) time.Duration { return r.Latency.P99 }), durRatio(func(r *Result) time.Duration { return r.Latency.P99 })},
		row{"latency p99.9", d(func(r *Result) time.Duration { return r.Latency.P999 }), durRatio(func(r *Result) time.Duration { return r.Latency.P999 })},
		row{"latency max", d(func(r *Result) time.Duration { return r.Latency.Max }), durRatio(func(r *Result) time.Duration { return r.Latency.Max })},
		row{"connect p50", d(func(r *Result) time.Duration { return r.Connect.P50 }), nil},
		row{"connect p99", d(func(r *Result) time.Duration { return r.Connect.P99 }), nil},
		row{"TCP conns opened", i(func(r *Result) int64 { return int64(r.ConnsOpened) }), numRatio(fi(func(r *Result) int64 { return int64(r.ConnsOpened) }))},
		row{"ephemeral ports used", i(func(r *Result) int64 { return int64(r.PortsUsed) }), nil},
		row{"closed first by client", i(func(r *Result) int64 { return r.ClosedByClient }), nil},
		row{"closed first by target", i(func(r *Result) int64 { return r.ClosedByServer }), nil},
		row{"TIME_WAIT client side", i(func(r *Result) int64 { return int64(r.TimeWaitClient) }), nil},
		row{"TIME_WAIT target side", i(func(r *Result) int64 { return int64(r.TimeWaitTarget) }), nil},
		row{"duration", d(func(r *Result) time.Duration { return r.Duration }), nil},
	)
	return rows
}

// WriteText writes rs as one table, a column per result; with exactly two
// results a third column gives second/first ratios.
func WriteText(w io.Writer, rs ...*Result) error {
	if len(rs) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "target %s (%s)", rs[0].Target, rs[0].Protocol)
	if r := rs[0]; r.Rate > 0 {
		fmt.Fprintf(&b, ", open loop at %g req/s", r.Rate)
	}
	fmt.Fprintf(&b, ", concurrency %d\n", rs[0].Concurrency)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t", r.Label)
	}
	two := len(rs) == 2
	if two {
		fmt.Fprintf(tw, "%s/%s\t", rs[1].Label, rs[0].Label)
	}
	fmt.Fprintln(tw)
	for _, row := range tableRows(rs) {
		fmt.Fprintf(tw, "%s\t", row.name)
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t", row.value(r))
		}
		if two {
			v := ""
			if row.ratio != nil {
				v = row.ratio(rs[0], rs[1])
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Interrupted {
			fmt.Fprintf(&b, "%s: interrupted, figures cover %s\n", r.Label, FormatDuration(r.Duration))
		}
		if r.TimeWaitErr != "" {
			fmt.Fprintf(&b, "%s: TIME_WAIT census failed: %s\n", r.Label, r.TimeWaitErr)
		}
	}
	b.WriteString(TimeWaitNote + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes {"results": [...]} (durations in nanoseconds).
func WriteJSON(w io.Writer, rs ...*Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Results []*Result `json:"results"`
		Note    string    `json:"note"`
	}{rs, TimeWaitNote})
}

// FormatDuration prints d with three significant digits in a unit that
// suits it (µs, ms, s).
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', sigDecimals(float64(d)/1e3), 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', sigDecimals(float64(d)/1e6), 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', sigDecimals(d.Seconds()), 64) + "s"
}

func sigDecimals(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}
