package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// runScaling: one tether binary at each GOMAXPROCS of -scaling-procs
// (1 and 2), in the same run and the same layout: the proxy may run on
// the CPUs of -scaling-cpus (default every CPU), wrk (-t 1 -c 50) and the
// backend nginx (1 worker) stay pinned on the load CPU as in the http
// table. The ratio of each GOMAXPROCS over the first is how tether scales.
//
// On a 2-core machine the proxy's CPUs include the load CPU: a second P
// can only take CPU time from wrk and the backend, so the ratio there
// measures that contention, not what a free core would give (the section
// warns; its "load CPU busy" and "machine busy" rows show whether the
// machine set the ceiling). On a bigger machine give the proxy CPUs of its
// own: -scaling-cpus 0,1 -load-cpu 2.
func (e *env) runScaling(ctx context.Context) (*section, error) {
	cpus := e.o.scalingCPUs
	if cpus == "" {
		cpus = fmt.Sprintf("0-%d", runtime.NumCPU()-1)
	}
	procs := map[string]int{}
	var ts []target
	for _, n := range e.o.scalingProcs {
		name := "gomaxprocs=" + strconv.Itoa(n)
		procs[name] = n
		ts = append(ts, target{name: name, kind: tether, bin: e.tethers[0].bin})
	}
	var keys []string
	for _, t := range ts {
		for _, sc := range httpScenarios {
			keys = append(keys, t.name+"."+sc.key)
		}
	}
	back, all := e.backendPorts(roundKeys(e.o.rounds, keys...))
	be, err := e.startBackend(ctx, "nginx-backend-scaling", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("scaling", fmt.Sprintf("one tether (%s) at GOMAXPROCS %s — the proxy on CPUs %s, wrk and the backend pinned on CPU %d",
		e.tethers[0].name, joinInts(e.o.scalingProcs), cpus, e.o.loadCPU), names(ts)...)
	for _, t := range ts[1:] {
		s.Ratios = append(s.Ratios, ratio{Name: t.name + "/" + ts[0].name, Num: t.name, Den: ts[0].name})
	}
	s.Setup = []string{
		fmt.Sprintf("wrk -c %d -t %d -d %v --latency and the backend nginx (1 worker) on CPU %d (taskset); tether under taskset -c %s with GOMAXPROCS set; pooling as in the http table",
			wrkConns, wrkThreads, e.o.dur, e.o.loadCPU, cpus),
		"each round starts a fresh tether per GOMAXPROCS; the order alternates between rounds",
	}
	if cpuListHas(cpus, e.o.loadCPU) {
		s.warn(fmt.Sprintf("the proxy's CPUs (%s) include the load CPU %d (%d CPUs here): above GOMAXPROCS 1 the proxy's second thread can only take CPU from wrk and the backend: the ratio measures that contention, not what a free core would give (give the proxy CPUs of its own on a bigger machine: -scaling-cpus 0,1 -load-cpu 2)",
			cpus, e.o.loadCPU, runtime.NumCPU()))
	}
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.scalingRound(ctx, s, t, round, back, be, cpus, procs[t.name])
	})
	addScalingRows(s, e.o.scalingProcs[0])
	return s, nil
}

// scalingRound runs wrk's keepalive and close loads through a fresh tether
// t at GOMAXPROCS n on cpus, and adds the figures to s.
func (e *env) scalingRound(ctx context.Context, s *section, t target, round int, back map[string]int, be *backend, cpus string, n int) error {
	pairs := e.httpPairs(t, round, back)
	cfg := e.proxyConfigFor("http", pairs...)
	cfg.Threads, cfg.CPUs = n, cpus
	r, err := e.startProxy(ctx, t, fmt.Sprintf("scaling-%d-%d", n, round), cfg)
	if err != nil {
		return err
	}
	defer e.stopProxy(r)
	for i, sc := range httpScenarios {
		argv := e.wrkArgv(wrkConns, wrkThreads, sc.key == "close", "http://127.0.0.1:"+strconv.Itoa(pairs[i].Front)+"/")
		a0, aerr := be.accepts()
		st0 := readProcStat()
		figs, u, err := e.runWrk(ctx, argv, r.pids)
		st1 := readProcStat()
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		if !r.alive() {
			return fmt.Errorf("%s died during wrk: %s", t.name, r.proc.tail(5))
		}
		s.command(t.name, []string{"GOMAXPROCS=" + strconv.Itoa(n), "taskset", "-c", cpus, "tether", "run", "-c", "scaling.toml"})
		s.command(t.name, argv)
		if u.HaveProxies && figs["secs"] > 0 {
			figs["proxy_cpus"] = u.ProxyCPU.Seconds() / figs["secs"]
		}
		figs["machine_busy"] = machineBusy(st0, st1)
		if a1, err := be.accepts(); err == nil && aerr == nil {
			figs["backend_conns"] = float64(a1 - a0 - 1)
		}
		e.logf("scaling %s %s: %.0f req/s, proxy CPUs %.2f, load CPU busy %.0f%%, machine busy %.0f%%",
			sc.key, t.name, figs["rps"], figs["proxy_cpus"], 100*figs["cpu_load_util"], 100*figs["machine_busy"])
		s.add(t.name, prefixed(sc.key+".", figs))
	}
	return nil
}

// addScalingRows lists the scaling section's rows and notes; first is the
// GOMAXPROCS the ratios divide by.
func addScalingRows(s *section, first int) {
	for _, sc := range httpScenarios {
		k := sc.key + "."
		s.Rows = append(s.Rows,
			row{Group: sc.name, Label: "requests/s", Unit: "req/s", Metric: k + "rps"},
			row{Group: sc.name, Label: "p99 latency", Unit: "ms", Metric: k + "p99_ms", Lower: true},
			row{Group: sc.name, Label: "proxy CPUs used (CPU-s per s)", Unit: "CPU", Metric: k + "proxy_cpus"},
			row{Group: sc.name, Label: "req per proxy CPU-s", Unit: "req/CPU-s", Metric: k + "req_per_cpu_s"},
			row{Group: sc.name, Label: "load CPU busy (share)", Unit: "share", Metric: k + "cpu_load_util"},
			row{Group: sc.name, Label: "machine busy, all CPUs (share)", Unit: "share", Metric: k + "machine_busy"},
			row{Group: sc.name, Label: "errors (socket + non-2xx)", Unit: "count", Metric: k + "errors", Lower: true},
		)
	}
	s.Notes = []string{
		"the ratio column is requests/s (and each other row) at the higher GOMAXPROCS over GOMAXPROCS " + strconv.Itoa(first) + ", same binary, same run",
		"machine busy: busy share of every CPU together over the wrk run (/proc/stat); near 1.00 means the machine, not the proxy, set the ceiling",
	}
}

// machineBusy is the busy share of all CPUs together between two
// /proc/stat readings (0 when either is missing).
func machineBusy(a, b map[int]cpuLine) float64 {
	var busy, total int64
	for n, x := range b {
		y, ok := a[n]
		if !ok {
			continue
		}
		busy += x.Busy - y.Busy
		total += x.Total - y.Total
	}
	if total <= 0 {
		return 0
	}
	return float64(busy) / float64(total)
}

// cpuListHas says whether a taskset CPU list ("0-3,6") holds cpu; an
// unparsable list counts as holding it (the caller's warning errs safe).
func cpuListHas(list string, cpu int) bool {
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			return true
		}
		if cpu >= a && cpu <= b {
			return true
		}
	}
	return false
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " and ")
}

// parseProcsList parses -scaling-procs: GOMAXPROCS values, comma-separated,
// each at least 1, at least two of them.
func parseProcsList(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-scaling-procs %q: %q is not a GOMAXPROCS (1 or more)", list, f)
		}
		out = append(out, n)
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("-scaling-procs %q: want at least two values to compare", list)
	}
	return out, nil
}
