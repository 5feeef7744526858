package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
)

// allcoresThreads is HAProxy's nbthread and nginx's worker_processes in
// the allcores scenario: one per CPU of the 2-core machine issue 13
// measures on (tether: its default GOMAXPROCS, every CPU).
const allcoresThreads = 2

// allcoresWrkThreads: wrk's threads there, so that the load may use both
// CPUs as the proxy does.
const allcoresWrkThreads = 2

// runAllCores: the http keepalive and Connection: close loads with
// nothing pinned: the proxy on every CPU, and the load and the backend
// beside it.
func (e *env) runAllCores(ctx context.Context) (*section, error) {
	ts := e.peers(true, true)
	var keys []string
	for _, t := range ts {
		for _, sc := range httpScenarios {
			keys = append(keys, t.name+"."+sc.key)
		}
	}
	back, all := e.backendPorts(roundKeys(e.o.rounds, keys...))
	be, err := e.startBackendOn(ctx, "nginx-backend-allcores", all, false, allcoresThreads)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("allcores", fmt.Sprintf("all cores — nothing pinned: tether default GOMAXPROCS (%d here), HAProxy nbthread %d, nginx worker_processes %d", runtime.NumCPU(), allcoresThreads, allcoresThreads), names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{
		fmt.Sprintf("wrk -c %d -t %d -d %v --latency, the backend nginx (%d workers) and the proxy all unpinned on %d CPUs; pooling as in the http table",
			wrkConns, allcoresWrkThreads, e.o.dur, allcoresThreads, runtime.NumCPU()),
	}
	if runtime.NumCPU() != allcoresThreads {
		s.warn(fmt.Sprintf("this machine has %d CPUs; HAProxy and nginx still run %d threads / workers", runtime.NumCPU(), allcoresThreads))
	}
	e.eachRound(ctx, ts, func(round int, t target) error {
		pairs := e.httpPairs(t, round, back)
		cfg := e.proxyConfigFor("http", pairs...)
		cfg.Threads, cfg.Unpinned = allcoresThreads, true
		r, err := e.startProxy(ctx, t, fmt.Sprintf("allcores-%s-%d", t.name, round), cfg)
		if err != nil {
			return err
		}
		defer e.stopProxy(r)
		if t.kind == nginx && len(r.pids) < 1+allcoresThreads {
			s.warn(fmt.Sprintf("nginx: %d processes found, want a master and %d workers: CPU time is partial", len(r.pids), allcoresThreads))
		}
		for i, sc := range httpScenarios {
			argv := []string{"wrk", "-c", strconv.Itoa(wrkConns), "-t", strconv.Itoa(allcoresWrkThreads), "-d", secsFlag(e.o.dur), "--latency"}
			if sc.key == "close" {
				argv = append(argv, "-H", "Connection: close")
			}
			argv = append(argv, "http://127.0.0.1:"+strconv.Itoa(pairs[i].Front)+"/")
			a0, aerr := be.accepts()
			figs, u, err := e.runWrk(ctx, argv, r.pids)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			if !r.alive() {
				return fmt.Errorf("%s died during wrk: %s", t.name, r.proc.tail(5))
			}
			s.command(t.name, argv)
			if u.HaveProxies && figs["secs"] > 0 {
				figs["proxy_cpus"] = u.ProxyCPU.Seconds() / figs["secs"]
			}
			if a1, err := be.accepts(); err == nil && aerr == nil {
				figs["backend_conns"] = float64(a1 - a0 - 1)
			}
			e.logf("allcores %s %s: %.0f req/s, %.0f req/CPU-s, proxy CPUs %.2f", sc.key, t.name, figs["rps"], figs["req_per_cpu_s"], figs["proxy_cpus"])
			s.add(t.name, prefixed(sc.key+".", figs))
		}
		return nil
	})
	a := e.tethers[0].name
	for _, sc := range httpScenarios {
		k := sc.key + "."
		s.Rows = append(s.Rows,
			row{Group: sc.name, Label: "requests/s", Unit: "req/s", Metric: k + "rps", Goal: betterPeer(a, false)},
			row{Group: sc.name, Label: "p99 latency", Unit: "ms", Metric: k + "p99_ms", Lower: true},
			row{Group: sc.name, Label: "req per proxy CPU-s (info)", Unit: "req/CPU-s", Metric: k + "req_per_cpu_s"},
			row{Group: sc.name, Label: "proxy CPUs used (CPU-s per s)", Unit: "CPU", Metric: k + "proxy_cpus"},
			row{Group: sc.name, Label: "backend conns opened", Unit: "conns", Metric: k + "backend_conns", Lower: true},
			row{Group: sc.name, Label: "errors (socket + non-2xx)", Unit: "count", Metric: k + "errors", Lower: true},
		)
	}
	s.Notes = []string{
		"issue 13's all-cores target is throughput (req/s) at least the better peer's; the proxy shares both CPUs with wrk and the backend, as on a small host",
	}
	return s, nil
}
