package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tetherproxy/tether/bench"
)

// figures are the numbers one measurement produced, by name.
type figures map[string]float64

// wrkResult is what wrk printed.
type wrkResult struct {
	Requests                                  int64
	Seconds                                   float64
	RPS                                       float64
	P50, P99                                  time.Duration // with --latency only
	ErrConnect, ErrRead, ErrWrite, ErrTimeout int64
	Non2xx                                    int64
}

func (w wrkResult) errors() int64 {
	return w.ErrConnect + w.ErrRead + w.ErrWrite + w.ErrTimeout + w.Non2xx
}

func (w wrkResult) put(figs figures) {
	figs["requests"] = float64(w.Requests)
	figs["secs"] = w.Seconds
	figs["rps"] = w.RPS
	if w.P99 > 0 {
		figs["p50_ms"] = ms(w.P50)
		figs["p99_ms"] = ms(w.P99)
	}
	figs["errors"] = float64(w.errors())
	figs["err_connect"] = float64(w.ErrConnect)
	figs["err_read"] = float64(w.ErrRead)
	figs["err_write"] = float64(w.ErrWrite)
	figs["err_timeout"] = float64(w.ErrTimeout)
	figs["non2xx"] = float64(w.Non2xx)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),`)
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s*([\d.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s*(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses:\s*(\d+)`)
)

// wrk's durations: a number and us, ms, s or m.
func wrkDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[unit]
	return time.Duration(f * float64(scale))
}

// parseWrk reads wrk's report (with or without --latency).
func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	m := wrkRequests.FindStringSubmatch(out)
	r := wrkRPS.FindStringSubmatch(out)
	if m == nil || r == nil {
		return w, fmt.Errorf("wrk: no request count in its output: %.200q", out)
	}
	w.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	w.Seconds = wrkDuration(m[2], m[3]).Seconds()
	w.RPS, _ = strconv.ParseFloat(r[1], 64)
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		if p[1] == "50" {
			w.P50 = wrkDuration(p[2], p[3])
		} else {
			w.P99 = wrkDuration(p[2], p[3])
		}
	}
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		w.ErrConnect, _ = strconv.ParseInt(s[1], 10, 64)
		w.ErrRead, _ = strconv.ParseInt(s[2], 10, 64)
		w.ErrWrite, _ = strconv.ParseInt(s[3], 10, 64)
		w.ErrTimeout, _ = strconv.ParseInt(s[4], 10, 64)
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		w.Non2xx, _ = strconv.ParseInt(s[1], 10, 64)
	}
	return w, nil
}

// iperfResult is the receiver's side of an iperf3 -J run.
type iperfResult struct {
	Gbps    float64
	Seconds float64
}

// parseIperf3 reads iperf3 -J output: end.sum_received.
func parseIperf3(out []byte) (iperfResult, error) {
	var d struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Seconds       float64 `json:"seconds"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if d.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", d.Error)
	}
	if d.End.SumReceived.BitsPerSecond == 0 {
		return iperfResult{}, fmt.Errorf("iperf3: no end.sum_received in its JSON")
	}
	return iperfResult{Gbps: d.End.SumReceived.BitsPerSecond / 1e9, Seconds: d.End.SumReceived.Seconds}, nil
}

// parseRedisCSV reads redis-benchmark --csv: requests/s by test name
// ("SET", "GET").
func parseRedisCSV(out string) (map[string]float64, error) {
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark CSV: %w", err)
	}
	rps := make(map[string]float64)
	for _, row := range rows {
		if len(row) < 2 || row[0] == "test" {
			continue
		}
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark CSV: %s: rps %q", row[0], row[1])
		}
		rps[row[0]] = v
	}
	if len(rps) == 0 {
		return nil, fmt.Errorf("redis-benchmark CSV: no result row in %.200q", out)
	}
	return rps, nil
}

// abResult is what ab printed.
type abResult struct {
	Requests int64
	Seconds  float64
	RPS      float64
	Failed   int64
	Non2xx   int64
}

var abField = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s*([\d.]+)`)
}

var (
	abComplete = abField("Complete requests")
	abTime     = abField("Time taken for tests")
	abRPS      = abField("Requests per second")
	abFailed   = abField("Failed requests")
	abNon2xx   = abField("Non-2xx responses")
)

// parseAb reads ab's report.
func parseAb(out string) (abResult, error) {
	var a abResult
	num := func(re *regexp.Regexp) (float64, bool) {
		m := re.FindStringSubmatch(out)
		if m == nil {
			return 0, false
		}
		f, err := strconv.ParseFloat(m[1], 64)
		return f, err == nil
	}
	n, ok1 := num(abComplete)
	rps, ok2 := num(abRPS)
	if !ok1 || !ok2 {
		return a, fmt.Errorf("ab: no result in its output: %.200q", out)
	}
	secs, _ := num(abTime)
	failed, _ := num(abFailed)
	non2xx, _ := num(abNon2xx)
	return abResult{Requests: int64(n), Seconds: secs, RPS: rps, Failed: int64(failed), Non2xx: int64(non2xx)}, nil
}

// parseTetherBench reads tether bench --json: one result, or two with
// --compare.
func parseTetherBench(out []byte) ([]bench.Result, error) {
	var d struct {
		Results []bench.Result `json:"results"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("tether bench JSON: %w", err)
	}
	if len(d.Results) == 0 {
		return nil, fmt.Errorf("tether bench JSON: no results")
	}
	return d.Results, nil
}

// putTetherBench adds one tether bench result's figures to figs.
func putTetherBench(figs figures, prefix string, r bench.Result) {
	var errs int64
	for _, n := range r.Errors {
		errs += n
	}
	figs[prefix+"requests"] = float64(r.Requests)
	figs[prefix+"ok"] = float64(r.OK)
	figs[prefix+"secs"] = r.Duration.Seconds()
	figs[prefix+"rps"] = r.RPS
	figs[prefix+"errors"] = float64(errs)
	figs[prefix+"conns_opened"] = float64(r.ConnsOpened)
	figs[prefix+"ports_used"] = float64(r.PortsUsed)
	figs[prefix+"tw_client"] = float64(r.TimeWaitClient)
	figs[prefix+"tw_target"] = float64(r.TimeWaitTarget)
	figs[prefix+"p50_ms"] = ms(r.Latency.P50)
	figs[prefix+"p99_ms"] = ms(r.Latency.P99)
	figs[prefix+"gen_cpu_s"] = r.CPU.Seconds()
	if t := r.TLS; t != nil {
		figs[prefix+"handshakes"] = float64(t.Handshakes)
		figs[prefix+"resumed"] = float64(t.Resumed)
		figs[prefix+"hs_per_s"] = t.PerSecond
		figs[prefix+"hs_p50_ms"] = ms(t.Handshake.P50)
		figs[prefix+"hs_p99_ms"] = ms(t.Handshake.P99)
	}
}

// negotiated is what a TLS result says was agreed:
// "version / cipher suite / group / ALPN".
func negotiated(r bench.Result) string {
	if r.TLS == nil {
		return ""
	}
	or := func(s string) string {
		if s == "" {
			return "?"
		}
		return s
	}
	return strings.Join([]string{or(r.TLS.Version), or(r.TLS.CipherSuite), or(r.TLS.Group), or(r.TLS.ALPN)}, " / ")
}

// parseStubStatus reads nginx's stub_status page: the "accepts" count.
func parseStubStatus(out string) (int64, error) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "accepts") && i+1 < len(lines) {
			f := strings.Fields(lines[i+1])
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("stub_status: no accepts line in %.100q", out)
}

// lastCount returns the number after the last "word N" line of idleconns'
// output ("ready N", "closed K", "accepted N"), and whether there was one.
func lastCount(out, word string) (int, bool) {
	n, ok := 0, false
	for _, l := range strings.Split(out, "\n") {
		if rest, found := strings.CutPrefix(l, word+" "); found {
			if v, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				n, ok = v, true
			}
		}
	}
	return n, ok
}

// tlsLine returns idleconns' "tls VERSION SUITE GROUP ALPN" line, without
// the word.
func tlsLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "tls "); ok {
			return rest
		}
	}
	return ""
}

var (
	sclientNew    = regexp.MustCompile(`(?m)^New, (TLSv[\d.]+), Cipher is (\S+)`)
	sclientKey    = regexp.MustCompile(`(?m)^(?:Server|Peer) Temp Key: ([^,\s]+)`)
	sclientALPN   = regexp.MustCompile(`(?m)^ALPN protocol: (\S+)`)
	sclientVerify = regexp.MustCompile(`(?m)^\s*Verify return code: \d+ \(([^)]*)\)`)
)

// parseSClient reads what openssl s_client negotiated, in the form
// negotiated() gives tether bench's: "TLS 1.3 / suite / group / ALPN", and
// its verify result.
func parseSClient(out string) (neg, verify string) {
	get := func(re *regexp.Regexp, i int) string {
		if m := re.FindStringSubmatch(out); m != nil {
			return m[i]
		}
		return "?"
	}
	ver := get(sclientNew, 1)
	if v, ok := strings.CutPrefix(ver, "TLSv"); ok {
		ver = "TLS " + v
	}
	return strings.Join([]string{ver, get(sclientNew, 2), get(sclientKey, 1), get(sclientALPN, 1)}, " / "), get(sclientVerify, 1)
}
