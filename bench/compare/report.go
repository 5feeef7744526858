package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/tetherproxy/tether/bench"
)

// section is one table of the report: columns (targets, or load
// generators), rows of metrics, ratios between columns, and what produced
// the figures. Each column's figures are kept per round; a row shows their
// median.
type section struct {
	Key      string   `json:"key"`
	Title    string   `json:"title"`
	Setup    []string `json:"setup"`
	Columns  []string `json:"columns"`
	Ratios   []ratio  `json:"ratios"`
	Rows     []row    `json:"rows"`
	Notes    []string `json:"notes,omitempty"`
	Commands []string `json:"commands"`
	// Text holds strings measured beside the numbers (what TLS negotiated).
	Text map[string]string `json:"text,omitempty"`
	// Samples: column → metric → one value per round.
	Samples map[string]map[string][]float64 `json:"samples"`
	Warn    []string                        `json:"warnings,omitempty"`
}

// ratio is a column of Num's value over Den's, as "1.05x". Den may be
// betterPeerCol: the better of the haproxy and nginx values of each row.
type ratio struct {
	Name     string `json:"name"`
	Num, Den string `json:"-"`
}

// betterPeerCol, as a ratio's Den, is the better of HAProxy and nginx on
// each row: the higher value, or the lower on a lower-is-better row
// (issue 13's "tether ÷ better peer").
const betterPeerCol = "better peer"

// better returns the better of the present values (nil when none is).
func better(lower bool, vs ...*float64) *float64 {
	var best *float64
	for _, p := range vs {
		if p != nil && (best == nil || (lower && *p < *best) || (!lower && *p > *best)) {
			best = p
		}
	}
	return best
}

// row is one metric. Goal, when set, judges the row's values (an issue's
// target) and says "met" or "MISSED".
type row struct {
	Group  string `json:"group,omitempty"`
	Label  string `json:"label"`
	Unit   string `json:"unit"`
	Metric string `json:"metric"`
	Lower  bool   `json:"lower_is_better,omitempty"`
	Goal   *goal  `json:"goal,omitempty"`

	// filled by finish
	Values     map[string]*float64 `json:"values"`
	RatioVals  map[string]*float64 `json:"ratios"`
	GoalMet    *bool               `json:"goal_met,omitempty"`
	GoalSays   string              `json:"goal_figures,omitempty"`
	Medianized int                 `json:"rounds"`
}

// goal is a target on a row. Check and Says see the row's values by
// column and its ratios by name; Says puts the figures the verdict rests
// on in words, for the summary of targets.
type goal struct {
	Text  string                                          `json:"text"`
	Check func(v map[string]*float64) (met, ok bool)      `json:"-"`
	Says  func(v map[string]*float64, unit string) string `json:"-"`
}

func newSection(key, title string, columns ...string) *section {
	return &section{Key: key, Title: title, Columns: columns, Samples: map[string]map[string][]float64{}, Text: map[string]string{}}
}

// add records one round's figures of a column.
func (s *section) add(col string, figs figures) {
	m := s.Samples[col]
	if m == nil {
		m = map[string][]float64{}
		s.Samples[col] = m
	}
	for k, v := range figs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			m[k] = append(m[k], v)
		}
	}
}

func (s *section) command(col string, argv []string) {
	line := col + ": " + command(argv)
	if !slices.Contains(s.Commands, line) {
		s.Commands = append(s.Commands, line)
	}
}

func (s *section) warn(msg string) { s.Warn = append(s.Warn, msg) }

// value is the median of a column's metric over the rounds.
func (s *section) value(col, metric string) *float64 {
	v := s.Samples[col][metric]
	if len(v) == 0 {
		return nil
	}
	m := median(v)
	return &m
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// finish computes every row's medians, ratios and goal.
func (s *section) finish() {
	for i := range s.Rows {
		r := &s.Rows[i]
		r.Values = map[string]*float64{}
		for _, c := range s.Columns {
			r.Values[c] = s.value(c, r.Metric)
			if n := len(s.Samples[c][r.Metric]); n > r.Medianized {
				r.Medianized = n
			}
		}
		r.RatioVals = map[string]*float64{}
		for _, q := range s.Ratios {
			a, b := r.Values[q.Num], r.Values[q.Den]
			if q.Den == betterPeerCol {
				b = better(r.Lower, r.Values["haproxy"], r.Values["nginx"])
			}
			if a != nil && b != nil && *b != 0 {
				v := *a / *b
				r.RatioVals[q.Name] = &v
			} else {
				r.RatioVals[q.Name] = nil
			}
		}
		if r.Goal != nil && r.Goal.Check != nil {
			vals := map[string]*float64{}
			for k, v := range r.Values {
				vals[k] = v
			}
			for k, v := range r.RatioVals {
				vals[k] = v
			}
			if met, ok := r.Goal.Check(vals); ok {
				r.GoalMet = &met
			}
			if r.Goal.Says != nil {
				r.GoalSays = r.Goal.Says(vals, r.Unit)
			}
		}
	}
}

// fmtValue prints a value for its unit: counts and rates with thousands
// separators, the rest with two decimals (one for KiB).
func fmtValue(v *float64, unit string) string {
	if v == nil {
		return "n/a"
	}
	switch unit {
	case "req/s", "req/CPU-s", "hs/s", "hs/CPU-s", "conns/s", "conns/CPU-s", "conns", "count", "sockets", "ports", "bytes/conn":
		return thousands(*v)
	case "KiB":
		return fmt.Sprintf("%.1f", *v)
	}
	return fmt.Sprintf("%.2f", *v)
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if v < -0.5 {
		return "-" + b.String()
	}
	return b.String()
}

func fmtRatio(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", *v)
}

// print writes the section as a Markdown table, with its setup, notes and
// the commands that produced it.
func (s *section) print(w io.Writer, rounds int) {
	fmt.Fprintf(w, "\n%s\n", s.Title)
	for _, l := range s.Setup {
		fmt.Fprintf(w, "  %s\n", l)
	}
	grouped := false
	for _, r := range s.Rows {
		grouped = grouped || r.Group != ""
	}
	var hdr []string
	if grouped {
		hdr = append(hdr, "scenario")
	}
	hdr = append(hdr, "metric", "unit")
	left := len(hdr)
	hdr = append(hdr, s.Columns...)
	for _, q := range s.Ratios {
		hdr = append(hdr, q.Name)
	}
	hasGoal := false
	for _, r := range s.Rows {
		hasGoal = hasGoal || r.Goal != nil
	}
	if hasGoal {
		hdr = append(hdr, "target")
	}
	var body [][]string
	for i, r := range s.Rows {
		var cells []string
		if grouped {
			g := r.Group
			if i > 0 && s.Rows[i-1].Group == g {
				g = ""
			}
			cells = append(cells, g)
		}
		cells = append(cells, r.Label, r.Unit)
		for _, c := range s.Columns {
			cells = append(cells, fmtValue(r.Values[c], r.Unit))
		}
		for _, q := range s.Ratios {
			cells = append(cells, fmtRatio(r.RatioVals[q.Name]))
		}
		if hasGoal {
			g := ""
			if r.Goal != nil {
				g = r.Goal.Text + ": " + verdict(r.GoalMet)
			}
			cells = append(cells, g)
		}
		body = append(body, cells)
	}
	bench.WriteMarkdownTable(w, hdr, body, left, hasGoal)
	if rounds > 1 {
		fmt.Fprintf(w, "(each figure: the median of %d rounds; every round's value is in the JSON)\n", rounds)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "(%s)\n", n)
	}
	keys := make([]string, 0, len(s.Text))
	for k := range s.Text {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", k, s.Text[k])
	}
	for _, n := range s.Warn {
		fmt.Fprintf(w, "WARNING: %s\n", n)
	}
	if len(s.Commands) > 0 {
		fmt.Fprintln(w, "produced by:")
		for _, c := range s.Commands {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
}

// verdict is a goal's word: met, MISSED, or n/a when not judged.
func verdict(met *bool) string {
	switch {
	case met == nil:
		return "n/a"
	case *met:
		return "met"
	}
	return "MISSED"
}

// printTargets writes one table of every row with a goal, across the
// sections: the run's answer to "which targets are met".
func printTargets(w io.Writer, sections []*section) {
	var body [][]string
	met, missed := 0, 0
	for _, s := range sections {
		for _, r := range s.Rows {
			if r.Goal == nil {
				continue
			}
			label := r.Label
			if r.Group != "" {
				label = r.Group + ": " + label
			}
			body = append(body, []string{s.Key, label, r.Goal.Text, verdict(r.GoalMet), r.GoalSays})
			switch {
			case r.GoalMet == nil:
			case *r.GoalMet:
				met++
			default:
				missed++
			}
		}
	}
	if len(body) == 0 {
		return
	}
	fmt.Fprintf(w, "\nTargets (issue 13's, and the older ones of the https, loadgen and cost tables): %d met, %d MISSED, %d not judged\n", met, missed, len(body)-met-missed)
	bench.WriteMarkdownTable(w, []string{"scenario", "row", "target", "verdict", "figures"}, body, 5, false)
}

// ratioGoal is a goal on a ratio column: at least (or, lower, at most) bound.
func ratioGoal(name string, bound float64, atMost bool) *goal {
	op := ">="
	if atMost {
		op = "<="
	}
	return &goal{
		Text: fmt.Sprintf("%s %s %.2fx", name, op, bound),
		Says: func(v map[string]*float64, _ string) string { return name + " " + fmtRatio(v[name]) },
		Check: func(v map[string]*float64) (bool, bool) {
			r := v[name]
			if r == nil {
				return false, false
			}
			if atMost {
				return *r <= bound, true
			}
			return *r >= bound, true
		},
	}
}

// writeJSON writes the whole run as one JSON document.
func writeJSON(w io.Writer, doc any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// colGoal is a goal of one column against another: col at most ref's
// value (or, !atMost, at least).
func colGoal(col, ref string, atMost bool) *goal {
	op := ">="
	if atMost {
		op = "<="
	}
	return &goal{
		Text: fmt.Sprintf("%s %s %s", col, op, ref),
		Check: func(v map[string]*float64) (bool, bool) {
			a, b := v[col], v[ref]
			if a == nil || b == nil {
				return false, false
			}
			if atMost {
				return *a <= *b, true
			}
			return *a >= *b, true
		},
		Says: func(v map[string]*float64, unit string) string { return versus(v, col, ref, v[ref], unit) },
	}
}

// boundGoal is a goal of a column against a fixed figure: at most bound
// (or, !atMost, at least) in the row's unit.
func boundGoal(col string, bound float64, unit string, atMost bool) *goal {
	op := ">="
	if atMost {
		op = "<="
	}
	b := bound
	return &goal{
		Text: fmt.Sprintf("%s %s %s %s", col, op, fmtValue(&b, unit), unit),
		Check: func(v map[string]*float64) (bool, bool) {
			a := v[col]
			if a == nil {
				return false, false
			}
			if atMost {
				return *a <= bound, true
			}
			return *a >= bound, true
		},
		Says: func(v map[string]*float64, unit string) string {
			return col + " " + fmtValue(v[col], unit) + " " + unit
		},
	}
}

// versus says "tether 5.1 vs haproxy 4.0 (1.27x)".
func versus(v map[string]*float64, col, refName string, ref *float64, unit string) string {
	a := v[col]
	out := fmt.Sprintf("%s %s vs %s %s", col, fmtValue(a, unit), refName, fmtValue(ref, unit))
	if a != nil && ref != nil && *ref != 0 {
		q := *a / *ref
		out += " (" + fmtRatio(&q) + ")"
	}
	return out
}
