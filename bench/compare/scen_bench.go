package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// tbenchArgv is tether bench (the load generator build) on the load CPU
// with GOMAXPROCS=1.
func (e *env) tbenchArgv(args ...string) []string {
	return append([]string{"env", "GOMAXPROCS=1", "taskset", "-c", strconv.Itoa(e.o.loadCPU), e.loadTether, "bench", "--json"}, args...)
}

func secsFlag(d time.Duration) string { return fmt.Sprintf("%.0fs", d.Seconds()) }

// backendPorts picks a backend port per key.
func (e *env) backendPorts(keys []string) (map[string]int, []int) {
	m := map[string]int{}
	var all []int
	for _, k := range keys {
		m[k] = e.ports.pick()
		all = append(all, m[k])
	}
	return m, all
}

func roundKeys(rounds int, names ...string) []string {
	var ks []string
	for r := 1; r <= rounds; r++ {
		for _, n := range names {
			ks = append(ks, fmt.Sprintf("%s.%d", n, r))
		}
	}
	return ks
}

// runTetherBench: tether bench --compare (short, then long conns) through
// tether's pooled http virtual server and against the backend directly:
// req/s, latency, conns and ports used, TIME_WAIT by side.
func (e *env) runTetherBench(ctx context.Context) (*section, error) {
	const conc = 20
	ts := append([]target{{name: "direct", kind: direct}}, e.tethers...)
	back, all := e.backendPorts(roundKeys(e.o.rounds, names(ts)...))
	be, err := e.startBackend(ctx, "nginx-backend-tbench", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("tbench", fmt.Sprintf("short vs long connections — tether bench --compare -c %d -d %v (each side)", conc, e.o.dur), names(ts)...)
	for _, t := range e.tethers {
		s.Ratios = append(s.Ratios, ratio{Name: t.name + "/direct", Num: t.name, Den: "direct"})
	}
	if len(e.tethers) > 1 {
		s.Ratios = append(s.Ratios, e.peerRatios(ts)[len(e.peerRatios(ts))-1])
	}
	s.Setup = []string{fmt.Sprintf("tether bench on CPU %d with GOMAXPROCS=1; through tether's pooled http virtual server (reuse shared, max_idle %d) on CPU %d, and to the nginx backend directly",
		e.o.loadCPU, tetherPoolMax, e.o.proxyCPU)}
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.throughOne(ctx, t, fmt.Sprintf("tbench-%s-%d", t.name, round), "http", back[fmt.Sprintf("%s.%d", t.name, round)], func(front int, r *running) error {
			argv := e.tbenchArgv("--compare", "-c", strconv.Itoa(conc), "-d", secsFlag(e.o.dur), "http://127.0.0.1:"+strconv.Itoa(front)+"/")
			a0, aerr := be.accepts()
			o0 := timeWaitOverflow()
			run, err := runLoad(ctx, 2*e.o.dur+time.Minute, nil, argv...)
			if err != nil {
				return err
			}
			res, err := parseTetherBench(run.out)
			if err != nil {
				return err
			}
			s.command(t.name, argv)
			figs := figures{"tw_overflow": float64(timeWaitOverflow() - o0), "gen_cpu_s": run.cpu.Seconds()}
			for _, x := range res {
				putTetherBench(figs, x.Conn+".", x)
			}
			if figs["short.rps"] > 0 {
				figs["long_over_short"] = figs["long.rps"] / figs["short.rps"]
			}
			if a1, err := be.accepts(); err == nil && aerr == nil {
				figs["backend_conns"] = float64(a1 - a0 - 1)
			}
			e.logf("tether bench --compare %s: short %.0f req/s, long %.0f req/s", t.name, figs["short.rps"], figs["long.rps"])
			s.add(t.name, figs)
			return nil
		})
	})
	for _, c := range []string{"short", "long"} {
		k := c + "."
		s.Rows = append(s.Rows,
			row{Group: c, Label: "requests/s", Unit: "req/s", Metric: k + "rps"},
			row{Group: c, Label: "p50 latency", Unit: "ms", Metric: k + "p50_ms", Lower: true},
			row{Group: c, Label: "p99 latency", Unit: "ms", Metric: k + "p99_ms", Lower: true},
			row{Group: c, Label: "conns opened", Unit: "conns", Metric: k + "conns_opened", Lower: true},
			row{Group: c, Label: "ephemeral ports used", Unit: "ports", Metric: k + "ports_used", Lower: true},
			row{Group: c, Label: "TIME_WAIT client", Unit: "sockets", Metric: k + "tw_client", Lower: true},
			row{Group: c, Label: "TIME_WAIT target", Unit: "sockets", Metric: k + "tw_target", Lower: true},
			row{Group: c, Label: "errors", Unit: "count", Metric: k + "errors", Lower: true},
		)
	}
	s.Rows = append(s.Rows,
		row{Group: "both", Label: "long / short req/s", Unit: "x", Metric: "long_over_short"},
		row{Group: "both", Label: "backend conns opened (short + long)", Unit: "conns", Metric: "backend_conns", Lower: true},
		row{Group: "both", Label: "kernel dropped TIME_WAIT", Unit: "sockets", Metric: "tw_overflow"},
	)
	s.Notes = []string{
		"TIME_WAIT client / target: counted by tether bench with sock_diag by the run's 4-tuples; short conns close from the client (--close client), so they land on the client",
		fmt.Sprintf("backend conns: nginx stub_status accepts over both runs; through tether bounded by its pool (%d)", tetherPoolMax),
	}
	return s, nil
}

// loadgen check runs: each is a load generator against its own nginx port.
type lgRun struct {
	key, col string // figure name prefix, column
	argv     func(url string) []string
	parse    func(run *loadRun) (figures, error)
}

// runLoadgenCheck: is tether bench fast enough not to be the bottleneck?
// Against the backend nginx, moved alone to the proxy CPU, the load
// generators alone on the load CPU: tether bench --conn long vs wrk -t 1,
// tether bench --conn short --close server vs ab (the server closes first
// in both), and tether bench's default --close client for information.
func (e *env) runLoadgenCheck(ctx context.Context) ([]*section, error) {
	runs := e.loadgenRuns()
	back, all := e.backendPorts(roundKeys(e.o.rounds, func() []string {
		ks := make([]string, len(runs))
		for i := range runs {
			ks[i] = "run" + strconv.Itoa(i)
		}
		return ks
	}()...))
	be, err := e.startBackend(ctx, "nginx-backend-loadgen", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	serverCPU := e.o.proxyCPU
	if err := be.pin(e.o.proxyCPU); err != nil {
		e.warnf("loadgen: could not move the backend to CPU %d (%v): it shares CPU %d with the load generator", e.o.proxyCPU, err, e.o.loadCPU)
		serverCPU = e.o.loadCPU
	}
	s := newSection("loadgen", "load generator check — tether bench against wrk (long) and ab (short), direct to nginx", lgTether, lgRef)
	s.Ratios = []ratio{{Name: "tether bench/ref", Num: lgTether, Den: lgRef}}
	s.Setup = []string{fmt.Sprintf("the load generator alone on CPU %d (tether bench GOMAXPROCS=1, wrk -t 1), the backend nginx (1 worker) alone on CPU %d; one nginx port per run",
		e.o.loadCPU, serverCPU)}
	if !hasProgram("ab") {
		e.warnf("loadgen: ab is missing (apt-get install apache2-utils): no short reference")
	}
	for r := 1; r <= e.o.rounds && ctx.Err() == nil; r++ {
		e.loadgenRound(ctx, s, runs, func(i int) int { return back[fmt.Sprintf("run%d.%d", i, r)] }, be.pids, serverCPU)
	}
	s.Rows = loadgenRows()
	s.Notes = []string{
		"short runs: 3 of each per round, alternating, the best counts; CPU shares: CPU-seconds per wall second of the load generator's process (near 1.00 = that side is the limit)",
		"ab sends HTTP/1.0 without keepalive, so nginx closes first: --close server is the same pattern; --close client (tether bench's default) leaves every TIME_WAIT on the client",
	}
	return []*section{s}, nil
}

// The load generator check's columns and connection counts.
const (
	lgTether, lgRef           = "tether bench", "wrk / ab"
	lgLongConns, lgShortConns = 50, 20
)

// loadgenRuns lists one round of the load generator check: tether bench
// and wrk with long conns, then three short runs of each (alternating
// which goes first: the best counts, as a busy host only ever slows a run
// down), then tether bench's default --close client for information.
func (e *env) loadgenRuns() []lgRun {
	n := strconv.Itoa(e.o.loadgenN)
	tb := func(rest ...string) func(string) []string {
		return func(url string) []string { return e.tbenchArgv(append(rest, url)...) }
	}
	parseTB := func(run *loadRun) (figures, error) {
		res, err := parseTetherBench(run.out)
		if err != nil {
			return nil, err
		}
		f := figures{}
		putTetherBench(f, "", res[0])
		return f, nil
	}
	parseW := func(run *loadRun) (figures, error) {
		w, err := parseWrk(string(run.out))
		if err != nil {
			return nil, err
		}
		f := figures{}
		w.put(f)
		return f, nil
	}
	parseAB := func(run *loadRun) (figures, error) {
		a, err := parseAb(string(run.out))
		if err != nil {
			return nil, err
		}
		return figures{"requests": float64(a.Requests), "secs": a.Seconds, "rps": a.RPS, "errors": float64(a.Failed + a.Non2xx)}, nil
	}
	long, short := strconv.Itoa(lgLongConns), strconv.Itoa(lgShortConns)
	runs := []lgRun{
		{"long", lgTether, tb("--conn", "long", "-c", long, "-d", secsFlag(e.o.dur)), parseTB},
		{"long", lgRef, func(url string) []string {
			return e.loadArgv("wrk", "-c", long, "-t", "1", "-d", secsFlag(e.o.dur), url)
		}, parseW},
	}
	for i := range 3 {
		st := lgRun{"short", lgTether, tb("--conn", "short", "--close", "server", "-c", short, "-n", n), parseTB}
		ab := lgRun{"short", lgRef, func(url string) []string { return e.loadArgv("ab", "-n", n, "-c", short, url) }, parseAB}
		if i%2 == 0 {
			runs = append(runs, st, ab)
		} else {
			runs = append(runs, ab, st)
		}
	}
	return append(runs, lgRun{"shortc", lgTether, tb("--conn", "short", "--close", "client", "-c", short, "-n", n), parseTB})
}

// loadgenRound runs every load generator run once against its own nginx
// port (port(i) for runs[i]) and adds the best run of each column and key
// to s.
func (e *env) loadgenRound(ctx context.Context, s *section, runs []lgRun, port func(int) int, serverPIDs []int, serverCPU int) {
	best := map[string]figures{} // col.key → the best run's figures
	for i, lr := range runs {
		if lr.col == lgRef && lr.key == "short" && !hasProgram("ab") {
			continue
		}
		argv := lr.argv("http://127.0.0.1:" + strconv.Itoa(port(i)) + "/")
		m := startMeter(serverPIDs, serverCPU, e.o.loadCPU)
		run, err := runLoad(ctx, 2*time.Minute+e.o.dur, nil, argv...)
		u := m.stop()
		if err != nil {
			e.warnf("loadgen %s %s: %v", lr.col, lr.key, err)
			continue
		}
		f, err := lr.parse(run)
		if err != nil {
			e.warnf("loadgen %s %s: %v", lr.col, lr.key, err)
			continue
		}
		s.command(lr.col, argv)
		if run.wall > 0 {
			f["gen_cpu_share"] = run.cpu.Seconds() / run.wall.Seconds()
			f["server_cpu_share"] = u.ProxyCPU.Seconds() / run.wall.Seconds()
		}
		if run.cpu > 0 {
			f["req_per_gen_cpu_s"] = f["requests"] / run.cpu.Seconds()
		}
		if u.Foreign > 0.05 {
			s.warn(fmt.Sprintf("%s %s: other processes took %.0f%% of the server's CPU: disturbed", lr.col, lr.key, 100*u.Foreign))
		}
		k := lr.col + "." + lr.key
		if b, ok := best[k]; !ok || f["rps"] > b["rps"] {
			best[k] = f
		}
		e.logf("loadgen %s %s: %.0f req/s", lr.col, lr.key, f["rps"])
		_ = sleep(ctx, 500*time.Millisecond)
	}
	for k, f := range best {
		col, key, _ := cutLast(k, ".")
		s.add(col, prefixed(key+".", f))
	}
}

// loadgenRows are the load generator check's table rows.
func loadgenRows() []row {
	var rows []row
	for _, g := range []struct{ key, name string }{
		{"long", fmt.Sprintf("long, %d conns", lgLongConns)},
		{"short", fmt.Sprintf("short, %d conns, server closes", lgShortConns)},
		{"shortc", fmt.Sprintf("short, %d conns, client closes (info)", lgShortConns)},
	} {
		k := g.key + "."
		rps := row{Group: g.name, Label: "requests/s", Unit: "req/s", Metric: k + "rps"}
		if g.key != "shortc" {
			rps.Goal = ratioGoal("tether bench/ref", 0.9, false)
		}
		rows = append(rows, rps,
			row{Group: g.name, Label: "requests", Unit: "count", Metric: k + "requests"},
			row{Group: g.name, Label: "load generator CPU share", Unit: "CPU", Metric: k + "gen_cpu_share"},
			row{Group: g.name, Label: "nginx CPU share", Unit: "CPU", Metric: k + "server_cpu_share"},
			row{Group: g.name, Label: "req per generator CPU-s", Unit: "req/CPU-s", Metric: k + "req_per_gen_cpu_s"},
			row{Group: g.name, Label: "errors", Unit: "count", Metric: k + "errors", Lower: true},
		)
		if g.key != "long" {
			rows = append(rows,
				row{Group: g.name, Label: "ephemeral ports used", Unit: "ports", Metric: k + "ports_used"},
				row{Group: g.name, Label: "TIME_WAIT client", Unit: "sockets", Metric: k + "tw_client"},
				row{Group: g.name, Label: "TIME_WAIT target", Unit: "sockets", Metric: k + "tw_target"},
			)
		}
	}
	return rows
}

// probeTLS asks openssl s_client what a client with OpenSSL's defaults (as
// wrk has) negotiates with the proxy on port.
func (e *env) probeTLS(ctx context.Context, port int) (neg, verify string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", "127.0.0.1:"+strconv.Itoa(port), "-alpn", "http/1.1", "-CAfile", e.tls.Cert)
	out, err := cmd.CombinedOutput() // stdin is empty: it ends after the handshake
	if err != nil && len(out) == 0 {
		return "", "", err
	}
	neg, verify = parseSClient(string(out))
	return neg, verify, nil
}

// sameTLS warns when the targets negotiated different things with one
// client: then the comparison is not like for like.
func sameTLS(s *section, ts []target, prefix string) {
	first := ""
	for _, t := range ts {
		v, _, _ := strings.Cut(s.Text[prefix+t.name], " / verify")
		if v == "" {
			continue
		}
		if first == "" {
			first = v
		} else if v != first {
			s.warn(fmt.Sprintf("MISMATCH (%s): %s negotiated %s, %s: not like for like", strings.TrimSpace(prefix), t.name, v, first))
		}
	}
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// runHTTPS: TLS 1.3 termination with one ECDSA P-256 certificate,
// HTTP/1.1 to an nginx backend: new handshakes (tether bench --conn short,
// no resumption) and keepalive requests (wrk over https).
func (e *env) runHTTPS(ctx context.Context) (*section, error) {
	const hsConns = 20
	ts := e.peers(false, true)
	back, all := e.backendPorts(roundKeys(e.o.rounds, names(ts)...))
	be, err := e.startBackend(ctx, "nginx-backend-https", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("https", "HTTPS — TLS 1.3 terminated by the proxy (ECDSA P-256), HTTP/1.1 to an nginx backend (64-byte body)", names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{
		fmt.Sprintf("handshakes: tether bench --conn short -c %d -d %v --tls-min 1.3 --tls-groups x25519 (a full handshake per request, GOMAXPROCS=1)", hsConns, e.o.dur),
		fmt.Sprintf("keepalive: wrk -c %d -t %d -d %v --latency https://...; HAProxy and nginx pinned to X25519 and TLS_AES_128_GCM_SHA256", wrkConns, wrkThreads, e.o.dur),
	}
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.throughOne(ctx, t, fmt.Sprintf("https-%s-%d", t.name, round), "https", back[fmt.Sprintf("%s.%d", t.name, round)], func(front int, r *running) error {
			url := "https://127.0.0.1:" + strconv.Itoa(front) + "/"
			if neg, verify, err := e.probeTLS(ctx, front); err == nil {
				s.Text["negotiated by openssl s_client (OpenSSL's defaults, as wrk) "+t.name] = neg + " / verify " + verify
			}
			argv := e.tbenchArgv("--conn", "short", "-c", strconv.Itoa(hsConns), "-d", secsFlag(e.o.dur),
				"--tls-min", "1.3", "--tls-groups", "x25519", "--cacert", e.tls.Cert, url)
			hs, res, u, err := e.tetherBench(ctx, s, t, r, argv)
			if err != nil {
				return fmt.Errorf("handshakes: %w", err)
			}
			if u.ProxyCPU > 0 {
				hs["per_cpu_s"] = hs["handshakes"] / u.ProxyCPU.Seconds()
				hs["proxy_cpu_share"] = u.ProxyCPU.Seconds() / hs["secs"]
			}
			if u.ProxyBusy > 0 {
				hs["per_busy_s"] = hs["handshakes"] / u.ProxyBusy.Seconds()
			}
			s.Text["negotiated by tether bench "+t.name] = negotiated(res)
			s.add(t.name, prefixed("hs.", hs))
			e.logf("handshakes %s: %.0f/s, %.0f per proxy CPU-s, %s", t.name, hs["hs_per_s"], hs["per_cpu_s"], negotiated(res))
			_ = sleep(ctx, 500*time.Millisecond)

			wargv := e.loadArgv("wrk", "-c", strconv.Itoa(wrkConns), "-t", strconv.Itoa(wrkThreads), "-d", secsFlag(e.o.dur), "--latency", url)
			ka, u2, err := e.runWrk(ctx, wargv, r.pids)
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
			s.command(t.name, wargv)
			e.foreign(s, t, u2)
			if u2.ProxyCPU > 0 {
				ka["proxy_cpu_share"] = u2.ProxyCPU.Seconds() / ka["secs"]
			}
			if u2.ProxyBusy > 0 {
				ka["per_busy_s"] = ka["requests"] / u2.ProxyBusy.Seconds()
			}
			s.add(t.name, prefixed("ka.", ka))
			e.logf("wrk https %s: %.0f req/s, %.0f per proxy CPU-s", t.name, ka["rps"], ka["req_per_cpu_s"])
			return nil
		})
	})
	sameTLS(s, ts, "negotiated by tether bench ")
	sameTLS(s, ts, "negotiated by openssl s_client (OpenSSL's defaults, as wrk) ")
	a := e.tethers[0].name
	hsG, kaG := "new handshakes (1 request per conn)", fmt.Sprintf("keepalive (wrk -c %d)", wrkConns)
	s.Rows = []row{
		{Group: hsG, Label: "handshakes/s", Unit: "hs/s", Metric: "hs.hs_per_s"},
		{Group: hsG, Label: "handshakes per proxy CPU-s", Unit: "hs/CPU-s", Metric: "hs.per_cpu_s", Goal: ratioGoal(a+"/haproxy", 0.8, false)},
		{Group: hsG, Label: fmt.Sprintf("handshakes per CPU-%d busy s", e.o.proxyCPU), Unit: "hs/CPU-s", Metric: "hs.per_busy_s"},
		{Group: hsG, Label: "handshake p50 (client side)", Unit: "ms", Metric: "hs.hs_p50_ms", Lower: true},
		{Group: hsG, Label: "handshake p99 (client side)", Unit: "ms", Metric: "hs.hs_p99_ms", Lower: true},
		{Group: hsG, Label: "resumed handshakes", Unit: "count", Metric: "hs.resumed", Lower: true},
		{Group: hsG, Label: "proxy CPU share (own)", Unit: "CPU", Metric: "hs.proxy_cpu_share"},
		{Group: hsG, Label: fmt.Sprintf("CPU %d busy share (all)", e.o.proxyCPU), Unit: "CPU", Metric: "hs.cpu_proxy_util"},
		{Group: hsG, Label: "errors", Unit: "count", Metric: "hs.errors", Lower: true},
		{Group: kaG, Label: "requests/s", Unit: "req/s", Metric: "ka.rps"},
		{Group: kaG, Label: "req per proxy CPU-s", Unit: "req/CPU-s", Metric: "ka.req_per_cpu_s", Goal: ratioGoal(a+"/haproxy", 1.0, false)},
		{Group: kaG, Label: fmt.Sprintf("req per CPU-%d busy s", e.o.proxyCPU), Unit: "req/CPU-s", Metric: "ka.per_busy_s"},
		{Group: kaG, Label: "p99 latency", Unit: "ms", Metric: "ka.p99_ms", Lower: true},
		{Group: kaG, Label: "proxy CPU share (own)", Unit: "CPU", Metric: "ka.proxy_cpu_share"},
		{Group: kaG, Label: fmt.Sprintf("CPU %d busy share (all)", e.o.proxyCPU), Unit: "CPU", Metric: "ka.cpu_proxy_util"},
		{Group: kaG, Label: "errors", Unit: "count", Metric: "ka.errors", Lower: true},
	}
	s.Notes = []string{
		fmt.Sprintf("CPU busy share near 1.00: the proxy's CPU was the limit; lower: the load generator (sharing CPU %d with the backend) was, and the rates are lower bounds of the proxy's", e.o.loadCPU),
	}
	return s, nil
}

// runCost: what the warm pool (min_idle) and the per-member reuse
// counters cost the http request path: tether built from the working tree
// with min_idle 8 and its counters, against a build with -tags
// tether_nocounters and min_idle 0. A fresh tether per run, the order
// alternating between rounds (as the former bench/cost.sh did).
func (e *env) runCost(ctx context.Context) (*section, error) {
	with, err := e.buildTether(ctx, "")
	if err != nil {
		return nil, err
	}
	without, err := e.buildTether(ctx, "tether_nocounters")
	if err != nil {
		return nil, err
	}
	ts := []target{{name: "with", kind: tether, bin: with}, {name: "without", kind: tether, bin: without}}
	minIdle := map[string]int{"with": 8, "without": 0}
	backPort := e.ports.pick()
	be, err := e.startBackend(ctx, "nginx-backend-cost", []int{backPort})
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("cost", "warm pool + reuse counters (with: min_idle 8, counters) against neither (without: -tags tether_nocounters, min_idle 0)", "with", "without")
	s.Ratios = []ratio{{Name: "with/without", Num: "with", Den: "without"}}
	s.Setup = []string{fmt.Sprintf("both built from the working tree; wrk -c %d -t %d -d %v, a fresh tether per run (cold pool, 0.5 s to fill), alone on CPU %d with GOMAXPROCS=1; nginx and wrk on CPU %d",
		wrkConns, wrkThreads, e.o.dur, e.o.proxyCPU, e.o.loadCPU)}
	e.eachRound(ctx, ts, func(round int, t target) error {
		for _, sc := range httpScenarios {
			front := e.ports.pick()
			cfg := e.proxyConfigFor("http", pair{front, backPort})
			cfg.MinIdle = minIdle[t.name]
			r, err := e.startProxy(ctx, t, fmt.Sprintf("cost-%s-%s-%d", t.name, sc.key, round), cfg)
			if err != nil {
				return err
			}
			_ = sleep(ctx, 200*time.Millisecond) // with startProxy's 0.3 s: the warm pool fills
			argv := e.wrkArgv(wrkConns, wrkThreads, sc.key == "close", "http://127.0.0.1:"+strconv.Itoa(front)+"/")
			figs, u, err := e.runWrk(ctx, argv, r.pids)
			e.stopProxy(r)
			if err != nil {
				return err
			}
			s.command(t.name, argv)
			e.foreign(s, t, u)
			s.add(t.name, prefixed(sc.key+".", figs))
			e.logf("cost %s %s: %.0f req/s, %.0f req/CPU-s", t.name, sc.key, figs["rps"], figs["req_per_cpu_s"])
		}
		return nil
	})
	for _, sc := range httpScenarios {
		k := sc.key + "."
		s.Rows = append(s.Rows,
			row{Group: sc.name, Label: "requests/s", Unit: "req/s", Metric: k + "rps"},
			row{Group: sc.name, Label: "req per proxy CPU-s", Unit: "req/CPU-s", Metric: k + "req_per_cpu_s", Goal: ratioGoal("with/without", 0.97, false)},
			row{Group: sc.name, Label: "errors", Unit: "count", Metric: k + "errors", Lower: true},
		)
	}
	s.Notes = []string{"issue 7's bound: the warm pool and counters cost at most 3% of requests per proxy CPU-second"}
	return s, nil
}

func hasProgram(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}
