package main

import (
	"context"
	"fmt"
	"strconv"
)

// latencyShare is the share of HAProxy's closed-loop peak offered to every
// target in the latency scenario (issue 13: 70%).
const latencyShare = 0.7

// runLatency: open-loop latency at one offered rate for every target:
// HAProxy's closed-loop keepalive peak (wrk, as in the http table) first,
// then latencyShare of it offered to each with tether bench --rate, whose
// latency runs from each request's scheduled time (no coordinated
// omission).
func (e *env) runLatency(ctx context.Context) (*section, error) {
	ts := e.peers(true, true)
	back, all := e.backendPorts(append(roundKeys(e.o.rounds, names(ts)...), "peak"))
	be, err := e.startBackend(ctx, "nginx-backend-latency", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	peak, err := e.haproxyPeak(ctx, back["peak"])
	if err != nil {
		return nil, fmt.Errorf("HAProxy's peak: %w", err)
	}
	rate := float64(int(latencyShare * peak))
	s := newSection("latency", fmt.Sprintf("open-loop latency at %.0f req/s for every target: %.0f%% of HAProxy's closed-loop keepalive peak (%.0f req/s)", rate, 100*latencyShare, peak), names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{
		fmt.Sprintf("peak: wrk -c %d -t %d -d %v through HAProxy, pinned as in the http table", wrkConns, wrkThreads, e.o.dur),
		fmt.Sprintf("then tether bench --conn long -c %d --rate %.0f -d %v (GOMAXPROCS=1) on CPU %d, the proxy alone on CPU %d: latency from each request's scheduled time", wrkConns, rate, e.o.dur, e.o.loadCPU, e.o.proxyCPU),
	}
	s.Text["HAProxy closed-loop peak (req/s)"] = fmt.Sprintf("%.0f", peak)
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.throughOne(ctx, t, fmt.Sprintf("latency-%s-%d", t.name, round), "http", back[fmt.Sprintf("%s.%d", t.name, round)], func(front int, r *running) error {
			argv := e.tbenchArgv("--conn", "long", "-c", strconv.Itoa(wrkConns), "--rate", strconv.FormatFloat(rate, 'f', 0, 64),
				"-d", secsFlag(e.o.dur), "http://127.0.0.1:"+strconv.Itoa(front)+"/")
			figs, res, _, err := e.tetherBench(ctx, s, t, r, argv)
			if err != nil {
				return err
			}
			figs["p999_ms"] = ms(res.Latency.P999)
			figs["max_ms"] = ms(res.Latency.Max)
			figs["offered_share"] = figs["rps"] / rate
			if figs["offered_share"] < 0.95 {
				s.warn(fmt.Sprintf("%s: %.0f req/s done of %.0f offered: the target or the load generator fell behind (its latency includes the queue)", t.name, figs["rps"], rate))
			}
			e.logf("latency %s at %.0f req/s: p50 %.2f ms, p99 %.2f ms (%.0f req/s done)", t.name, rate, figs["p50_ms"], figs["p99_ms"], figs["rps"])
			s.add(t.name, figs)
			return nil
		})
	})
	a := e.tethers[0].name
	s.Rows = []row{
		{Label: "requests/s done", Unit: "req/s", Metric: "rps"},
		{Label: "p50 latency", Unit: "ms", Metric: "p50_ms", Lower: true},
		{Label: "p99 latency", Unit: "ms", Metric: "p99_ms", Lower: true, Goal: ratioGoal(a+"/haproxy", 1.1, true)},
		{Label: "p99.9 latency", Unit: "ms", Metric: "p999_ms", Lower: true},
		{Label: "max latency", Unit: "ms", Metric: "max_ms", Lower: true},
		{Label: fmt.Sprintf("CPU %d busy share", e.o.proxyCPU), Unit: "CPU", Metric: "cpu_proxy_util"},
		{Label: fmt.Sprintf("CPU %d busy share (load)", e.o.loadCPU), Unit: "CPU", Metric: "cpu_load_util"},
		{Label: "errors", Unit: "count", Metric: "errors", Lower: true},
	}
	s.Notes = []string{
		fmt.Sprintf("the same offered rate for every target; direct shows what the load generator and the backend add on their own (CPU %d)", e.o.loadCPU),
	}
	return s, nil
}

// haproxyPeak is HAProxy's closed-loop keepalive req/s (wrk -t1 -c50,
// pinned as in the http table) in front of backPort.
func (e *env) haproxyPeak(ctx context.Context, backPort int) (float64, error) {
	var peak float64
	t := target{name: "haproxy", kind: haproxy}
	err := e.throughOne(ctx, t, "latency-peak-haproxy", "http", backPort, func(front int, r *running) error {
		figs, _, err := e.runWrk(ctx, e.wrkArgv(wrkConns, wrkThreads, false, "http://127.0.0.1:"+strconv.Itoa(front)+"/"), r.pids)
		if err != nil {
			return err
		}
		if figs["errors"] > 0 {
			return fmt.Errorf("%.0f errors in the peak run", figs["errors"])
		}
		peak = figs["rps"]
		return nil
	})
	if err == nil && peak <= 0 {
		err = fmt.Errorf("no requests")
	}
	e.logf("latency: HAProxy's closed-loop peak %.0f req/s", peak)
	return peak, err
}
