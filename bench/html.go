package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes one self-contained page: inline CSS, inline SVG charts
// (latency by percentile, throughput over time, requests/s, connections
// and TIME_WAIT by side, every result side by side) and the summary table.
// It has no script and refers to no URL, so it opens with no network.
func WriteHTML(w io.Writer, title string, rs ...*Result) error {
	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:0 0 6px}
.sub{color:#666;margin-bottom:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
.card{border:1px solid #ddd;border-radius:6px;padding:12px}
svg{width:100%%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:#444}
table{border-collapse:collapse;margin-top:16px}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
td:first-child,th:first-child{text-align:left}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.note{color:#666;margin-top:12px}
</style></head><body>
<h1>%s</h1>
`, e(title), e(title))
	if len(rs) > 0 {
		fmt.Fprintf(&b, "<div class=\"sub\">target %s (%s), concurrency %d, generated %s</div>\n",
			e(rs[0].Target), e(rs[0].Protocol), rs[0].Concurrency, time.Now().Format(time.RFC3339))
	}
	b.WriteString(`<div class="legend">`)
	for i, r := range rs {
		fmt.Fprintf(&b, `<span><i style="background:%s"></i>%s</span>`, color(i), e(r.Label))
	}
	b.WriteString("</div>\n<div class=\"grid\">\n")
	card(&b, "Latency by percentile", latencyChart(rs))
	card(&b, "Throughput over time (requests/s per 100 ms)", throughputChart(rs))
	card(&b, "Requests/s", barChart(rs, func(r *Result) float64 { return r.RPS }, "%.0f"))
	card(&b, "TCP connections opened, TIME_WAIT client side / target side", connChart(rs))
	if anyTLS(rs) {
		card(&b, "TLS handshake time p50 / p99 / max (µs)", handshakeChart(rs))
	}
	b.WriteString("</div>\n")
	writeTable(&b, rs)
	var notes strings.Builder
	writeTLSNotes(&notes, rs)
	if notes.Len() > 0 {
		fmt.Fprintf(&b, "<pre class=\"note\">%s</pre>\n", e(notes.String()))
	}
	fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n</body></html>\n", e(TimeWaitNote))
	_, err := io.WriteString(w, b.String())
	return err
}

var palette = []string{"#d9534f", "#2a7ab0", "#3a9d5d", "#a06cc0", "#e08a1e", "#555555"}

func color(i int) string { return palette[i%len(palette)] }

func card(b *strings.Builder, title, svg string) {
	fmt.Fprintf(b, "<div class=\"card\"><h2>%s</h2>\n%s</div>\n", html.EscapeString(title), svg)
}

// Chart geometry (SVG user units).
const (
	chartW, chartH         = 560.0, 300.0
	padL, padR, padT, padB = 64.0, 16.0, 12.0, 36.0
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
)

func svgOpen(b *strings.Builder, label string) {
	fmt.Fprintf(b, `<svg viewBox="0 0 %g %g" role="img" aria-label="%s">`+"\n",
		chartW, chartH, html.EscapeString(label))
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="#fafafa" stroke="#ccc"/>`+"\n", padL, padT, plotW, plotH)
}

// yAxis draws horizontal grid lines and labels for 0..top.
func yAxis(b *strings.Builder, top float64, format func(float64) string) {
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		y := padT + plotH - plotH*float64(i)/4
		fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e4e4e4"/>`, padL, y, padL+plotW, y)
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-4, y+4, html.EscapeString(format(v)))
	}
}

// niceTop rounds v up to 1, 2 or 5 times a power of ten.
func niceTop(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// percentile x position: log scale of 1/(1-p), p = 100 drawn at 99.999.
func percentileX(p float64) float64 {
	p = math.Min(p, 99.999)
	return padL + plotW*math.Log10(1/(1-p/100))/5
}

func latencyChart(rs []*Result) string {
	var b strings.Builder
	svgOpen(&b, "latency by percentile")
	var top time.Duration
	for _, r := range rs {
		for _, q := range r.Distribution {
			top = max(top, q.Latency)
		}
	}
	topMs := niceTop(float64(top) / float64(time.Millisecond))
	yAxis(&b, topMs, func(v float64) string { return FormatDuration(time.Duration(v * float64(time.Millisecond))) })
	for _, t := range []struct {
		p     float64
		label string
	}{{0, "0%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {100, "max"}} {
		x := percentileX(t.p)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#e4e4e4"/>`, x, padT, x, padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", x, padT+plotH+16, t.label)
	}
	for i, r := range rs {
		var d strings.Builder
		for j, q := range r.Distribution {
			y := padT + plotH - plotH*(float64(q.Latency)/float64(time.Millisecond))/topMs
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, percentileX(q.Percentile), y)
		}
		if d.Len() > 0 {
			fmt.Fprintf(&b, `<path class="series" d="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></path>`+"\n",
				strings.TrimSpace(d.String()), color(i), html.EscapeString(r.Label))
		}
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">percentile</text>`, padL+plotW/2, chartH-4)
	b.WriteString("</svg>\n")
	return b.String()
}

func throughputChart(rs []*Result) string {
	var b strings.Builder
	svgOpen(&b, "throughput over time")
	perSec := float64(time.Second / SeriesStep)
	var top float64
	var span time.Duration
	for _, r := range rs {
		for _, p := range r.Series {
			top = math.Max(top, float64(p.Requests)*perSec)
		}
		span = max(span, time.Duration(len(r.Series))*SeriesStep)
	}
	top = niceTop(top)
	spanS := math.Max(span.Seconds(), SeriesStep.Seconds())
	yAxis(&b, top, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	for i := 0; i <= 4; i++ {
		x := padL + plotW*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="middle">%.1fs</text>`, x, padT+plotH+16, spanS*float64(i)/4)
	}
	for i, r := range rs {
		var d strings.Builder
		for j, p := range r.Series {
			x := padL + plotW*(p.At+SeriesStep/2).Seconds()/spanS
			y := padT + plotH - plotH*float64(p.Requests)*perSec/top
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, x, y)
		}
		if d.Len() > 0 {
			fmt.Fprintf(&b, `<path class="series" d="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></path>`+"\n",
				strings.TrimSpace(d.String()), color(i), html.EscapeString(r.Label))
		}
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">time since start</text>`, padL+plotW/2, chartH-4)
	b.WriteString("</svg>\n")
	return b.String()
}

// bars draws groups of bars: one group per name, one bar per result.
func bars(label string, names []string, values [][]float64, format string) string {
	var b strings.Builder
	svgOpen(&b, label)
	var top float64
	for _, vs := range values {
		for _, v := range vs {
			top = math.Max(top, v)
		}
	}
	top = niceTop(top)
	yAxis(&b, top, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	groupW := plotW / float64(len(names))
	for g, name := range names {
		n := float64(len(values[g]))
		barW := groupW * 0.7 / math.Max(n, 1)
		x0 := padL + groupW*float64(g) + groupW*0.15
		for i, v := range values[g] {
			h := plotH * v / top
			x, y := x0+barW*float64(i), padT+plotH-h
			// A path, not a rect, so every chart's marks are paths.
			fmt.Fprintf(&b, `<path class="bar" d="M%.1f %.1f h%.1f v%.1f h%.1f Z" fill="%s"><title>%s</title></path>`,
				x, padT+plotH, barW-2, -h, -(barW - 2), color(i), html.EscapeString(fmt.Sprintf(format, v)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+barW/2-1, y-3, html.EscapeString(fmt.Sprintf(format, v)))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", padL+groupW*(float64(g)+0.5), padT+plotH+16, html.EscapeString(name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func barChart(rs []*Result, f func(*Result) float64, format string) string {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	return bars("requests per second", []string{"requests/s"}, [][]float64{vs}, format)
}

func connChart(rs []*Result) string {
	names := []string{"conns opened", "TIME_WAIT client", "TIME_WAIT target"}
	values := make([][]float64, len(names))
	for _, r := range rs {
		values[0] = append(values[0], float64(r.ConnsOpened))
		values[1] = append(values[1], float64(r.TimeWaitClient))
		values[2] = append(values[2], float64(r.TimeWaitTarget))
	}
	return bars("connections and TIME_WAIT", names, values, "%.0f")
}

func handshakeChart(rs []*Result) string {
	names := []string{"p50", "p99", "max"}
	values := make([][]float64, len(names))
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	for _, r := range rs {
		var h Percentiles
		if r.TLS != nil {
			h = r.TLS.Handshake
		}
		values[0] = append(values[0], us(h.P50))
		values[1] = append(values[1], us(h.P99))
		values[2] = append(values[2], us(h.Max))
	}
	return bars("TLS handshake time", names, values, "%.0f")
}

func writeTable(b *strings.Builder, rs []*Result) {
	e := html.EscapeString
	b.WriteString("<table>\n<tr><th></th>")
	for _, r := range rs {
		fmt.Fprintf(b, "<th>%s</th>", e(r.Label))
	}
	two := len(rs) == 2
	if two {
		fmt.Fprintf(b, "<th>%s/%s</th>", e(rs[1].Label), e(rs[0].Label))
	}
	b.WriteString("</tr>\n")
	for _, row := range tableRows(rs) {
		fmt.Fprintf(b, "<tr><td>%s</td>", e(strings.TrimSpace(row.name)))
		for _, r := range rs {
			fmt.Fprintf(b, "<td>%s</td>", e(row.value(r)))
		}
		if two {
			v := ""
			if row.ratio != nil {
				v = row.ratio(rs[0], rs[1])
			}
			fmt.Fprintf(b, "<td>%s</td>", e(v))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
}
