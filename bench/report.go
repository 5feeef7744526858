package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
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
	)
	if anyTLS(rs) {
		rows = append(rows, tlsRows()...)
	}
	rows = append(rows,
		row{"TCP conns opened", i(func(r *Result) int64 { return int64(r.ConnsOpened) }), numRatio(fi(func(r *Result) int64 { return int64(r.ConnsOpened) }))},
		row{"ephemeral ports used", i(func(r *Result) int64 { return int64(r.PortsUsed) }), nil},
		row{"closed first by client", i(func(r *Result) int64 { return r.ClosedByClient }), nil},
		row{"closed first by target", i(func(r *Result) int64 { return r.ClosedByServer }), nil},
		row{"TIME_WAIT client side", i(func(r *Result) int64 { return int64(r.TimeWaitClient) }), nil},
		row{"TIME_WAIT target side", i(func(r *Result) int64 { return int64(r.TimeWaitTarget) }), nil},
		row{"client CPU/request", d(cpuPerRequest), durRatio(cpuPerRequest)},
		row{"duration", d(func(r *Result) time.Duration { return r.Duration }), nil},
	)
	return rows
}

// cpuPerRequest is the bench process's CPU time per attempted request.
func cpuPerRequest(r *Result) time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

func anyTLS(rs []*Result) bool {
	for _, r := range rs {
		if r.TLS != nil {
			return true
		}
	}
	return false
}

// tlsRows are the table rows of https runs; a plain run beside them reads "-".
func tlsRows() []row {
	str := func(f func(t *TLSStats) string) func(*Result) string {
		return func(r *Result) string {
			if r.TLS == nil {
				return "-"
			}
			if v := f(r.TLS); v != "" {
				return v
			}
			return "-"
		}
	}
	dur := func(f func(t *TLSStats) time.Duration) func(*Result) string {
		return str(func(t *TLSStats) string { return FormatDuration(f(t)) })
	}
	num := func(f func(t *TLSStats) float64) func(a, b *Result) string {
		return numRatio(func(r *Result) float64 {
			if r.TLS == nil {
				return 0
			}
			return f(r.TLS)
		})
	}
	hsDur := func(f func(t *TLSStats) time.Duration) func(a, b *Result) string {
		return durRatio(func(r *Result) time.Duration {
			if r.TLS == nil {
				return 0
			}
			return f(r.TLS)
		})
	}
	return []row{
		{"TLS handshakes", str(func(t *TLSStats) string { return strconv.FormatInt(t.Handshakes, 10) }),
			num(func(t *TLSStats) float64 { return float64(t.Handshakes) })},
		{"  resumed", str(func(t *TLSStats) string {
			return strconv.FormatInt(t.Resumed, 10) + " (" + percent(t.ResumedShare) + ")"
		}), nil},
		{"handshakes/s", str(func(t *TLSStats) string { return strconv.FormatFloat(t.PerSecond, 'f', 1, 64) }),
			num(func(t *TLSStats) float64 { return t.PerSecond })},
		{"handshake p50", dur(func(t *TLSStats) time.Duration { return t.Handshake.P50 }), hsDur(func(t *TLSStats) time.Duration { return t.Handshake.P50 })},
		{"handshake p99", dur(func(t *TLSStats) time.Duration { return t.Handshake.P99 }), hsDur(func(t *TLSStats) time.Duration { return t.Handshake.P99 })},
		{"handshake max", dur(func(t *TLSStats) time.Duration { return t.Handshake.Max }), hsDur(func(t *TLSStats) time.Duration { return t.Handshake.Max })},
		{"handshake share of latency", str(func(t *TLSStats) string { return percent(t.HandshakeShare) }), nil},
		{"TLS version", str(func(t *TLSStats) string { return t.Version }), nil},
		{"cipher suite", str(func(t *TLSStats) string { return t.CipherSuite }), nil},
		{"key exchange", str(func(t *TLSStats) string { return t.Group }), nil},
		{"ALPN", str(func(t *TLSStats) string { return t.ALPN }), nil},
	}
}

// percent prints a share 0..1 as a percentage with up to 3 significant
// digits.
func percent(v float64) string {
	v *= 100
	d := 1
	switch {
	case v == 0 || v >= 10:
		d = 0
	case v < 1:
		d = 2
	}
	return strconv.FormatFloat(v, 'f', d, 64) + "%"
}

// TLSCost sets two https runs side by side (`tether bench --compare`:
// short, then long) and says what the extra handshakes cost.
type TLSCost struct {
	Runs []TLSCostRun `json:"runs"`
	// RPSRatio is the second run's requests/s over the first's.
	RPSRatio float64 `json:"rps_ratio"`
	// ClientCPUPerConn is the bench's extra CPU time per extra connection:
	// the difference in client CPU per request over the difference in
	// handshakes per request. It covers a TCP connect, a full (or resumed)
	// handshake and a close; 0 when the runs opened as many conns per
	// request.
	ClientCPUPerConn time.Duration `json:"client_cpu_per_extra_conn_ns"`
}

// TLSCostRun is one run of a TLSCost.
type TLSCostRun struct {
	Label                string        `json:"label"`
	Requests             int64         `json:"requests"`
	Handshakes           int64         `json:"handshakes"`
	HandshakesPerRequest float64       `json:"handshakes_per_request"`
	HandshakeP50         time.Duration `json:"handshake_p50_ns"`
	HandshakeP99         time.Duration `json:"handshake_p99_ns"`
	HandshakeShare       float64       `json:"handshake_share_of_latency"`
	RPS                  float64       `json:"rps"`
	ClientCPUPerRequest  time.Duration `json:"client_cpu_per_request_ns"`
}

// CompareTLS returns the handshake cost of two https runs; nil unless rs
// is exactly two runs that both have TLS figures.
func CompareTLS(rs ...*Result) *TLSCost {
	if len(rs) != 2 || rs[0].TLS == nil || rs[1].TLS == nil {
		return nil
	}
	c := &TLSCost{}
	for _, r := range rs {
		run := TLSCostRun{
			Label: r.Label, Requests: r.Requests, Handshakes: r.TLS.Handshakes,
			HandshakeP50: r.TLS.Handshake.P50, HandshakeP99: r.TLS.Handshake.P99,
			HandshakeShare: r.TLS.HandshakeShare, RPS: r.RPS, ClientCPUPerRequest: cpuPerRequest(r),
		}
		if r.Requests > 0 {
			run.HandshakesPerRequest = float64(r.TLS.Handshakes) / float64(r.Requests)
		}
		c.Runs = append(c.Runs, run)
	}
	a, b := c.Runs[0], c.Runs[1]
	if a.RPS > 0 {
		c.RPSRatio = b.RPS / a.RPS
	}
	if dh := a.HandshakesPerRequest - b.HandshakesPerRequest; dh > 0.01 || dh < -0.01 {
		c.ClientCPUPerConn = time.Duration(float64(a.ClientCPUPerRequest-b.ClientCPUPerRequest) / dh)
	}
	return c
}

// writeTLSNotes writes what the table cannot hold: how the runs verified
// the target, the handshake failures by message, and (two runs) the
// handshake cost summary.
func writeTLSNotes(b *strings.Builder, rs []*Result) {
	for _, r := range rs {
		t := r.TLS
		if t == nil {
			continue
		}
		sni := t.ServerName
		if sni == "" {
			sni = "none (IP address)"
		}
		resume := "off (every connection a full handshake)"
		if t.ResumeEnabled {
			resume = "on (client session cache)"
		}
		fmt.Fprintf(b, "%s: TLS >= %s, SNI %s, verify: %s, resumption %s\n", r.Label, t.MinVersion, sni, t.Verify, resume)
		if strings.HasPrefix(t.Verify, "insecure") {
			fmt.Fprintf(b, "%s: WARNING: --insecure: the target's certificate was not verified\n", r.Label)
		}
		msgs := make([]string, 0, len(t.Errors))
		for m := range t.Errors {
			msgs = append(msgs, m)
		}
		sort.Slice(msgs, func(i, j int) bool { return t.Errors[msgs[i]] > t.Errors[msgs[j]] })
		for _, m := range msgs {
			fmt.Fprintf(b, "%s: TLS handshake failed %d times: %s\n", r.Label, t.Errors[m], m)
		}
	}
	if c := CompareTLS(rs...); c != nil {
		a, z := c.Runs[0], c.Runs[1]
		fmt.Fprintf(b, "TLS handshake cost, %s vs %s: %d vs %d handshakes (%.3g vs %.3g per request), p50 %s vs %s, p99 %s vs %s;\n",
			a.Label, z.Label, a.Handshakes, z.Handshakes, a.HandshakesPerRequest, z.HandshakesPerRequest,
			FormatDuration(a.HandshakeP50), FormatDuration(z.HandshakeP50), FormatDuration(a.HandshakeP99), FormatDuration(z.HandshakeP99))
		fmt.Fprintf(b, "  handshakes are %s of %s's mean request latency, %s of %s's; requests/s %s/%s %.2fx",
			percent(a.HandshakeShare), a.Label, percent(z.HandshakeShare), z.Label, z.Label, a.Label, c.RPSRatio)
		if c.ClientCPUPerConn != 0 {
			fmt.Fprintf(b, "; client CPU %s per extra connection (connect, handshake, close)", FormatDuration(c.ClientCPUPerConn))
		}
		b.WriteString("\n")
	}
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
	writeTLSNotes(&b, rs)
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

// WriteJSON writes {"results": [...]} (durations in nanoseconds); two
// https runs add "tls_cost" ([CompareTLS]).
func WriteJSON(w io.Writer, rs ...*Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Results []*Result `json:"results"`
		TLSCost *TLSCost  `json:"tls_cost,omitempty"`
		Note    string    `json:"note"`
	}{rs, CompareTLS(rs...), TimeWaitNote})
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
