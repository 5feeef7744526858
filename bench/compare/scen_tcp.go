package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// tcpTargets: direct (when asked), HAProxy, nginx when its stream module
// is installed, and the tethers.
func (e *env) tcpTargets(withDirect bool) []target {
	ts := e.peers(withDirect, e.streamModule != "")
	if e.streamModule == "" {
		e.warnf("nginx's stream module is not installed (apt-get install libnginx-mod-stream): no nginx column in tcp mode")
	}
	return ts
}

// startServer starts a backend program on the load CPU and waits for its
// port.
func (e *env) startServer(ctx context.Context, name string, port int, argv ...string) (*proc, error) {
	p, err := e.ps.start(name, nil, append([]string{"taskset", "-c", strconv.Itoa(e.o.loadCPU)}, argv...)...)
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, p, 15*time.Second, port); err != nil {
		e.ps.stop(p)
		return nil, err
	}
	return p, nil
}

// throughOne starts t in tcp mode in front of back on a fresh port (direct:
// back itself), runs load against the front port and stops it.
func (e *env) throughOne(ctx context.Context, t target, tag string, mode string, back int, load func(front int, r *running) error) error {
	front := back
	if t.kind != direct {
		front = e.ports.pick()
	}
	r, err := e.startProxy(ctx, t, tag, e.proxyConfigFor(mode, pair{front, back}))
	if err != nil {
		return err
	}
	defer e.stopProxy(r)
	err = load(front, r)
	if !r.alive() {
		return fmt.Errorf("%s died during the run: %s", t.name, r.proc.tail(5))
	}
	return err
}

func (e *env) loadArgv(argv ...string) []string {
	return append([]string{"taskset", "-c", strconv.Itoa(e.o.loadCPU)}, argv...)
}

// runIperf: iperf3, one stream, through each target.
func (e *env) runIperf(ctx context.Context) (*section, error) {
	port := e.ports.pick()
	srv, err := e.startServer(ctx, "iperf3-server", port, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("iperf3 -s: %w", err)
	}
	defer e.ps.stop(srv)
	ts := e.tcpTargets(true)
	s := newSection("iperf3", "iperf3, one stream, tcp mode (HAProxy mode tcp, nginx stream, tether tcp virtual server)", names(ts)...)
	s.Ratios = e.peerRatios(ts)
	secs := max(1, int(e.o.dur.Seconds()))
	if e.o.quick {
		secs = 1
	}
	s.Setup = []string{fmt.Sprintf("proxy alone on CPU %d, iperf3 client and server on CPU %d; %d s per run", e.o.proxyCPU, e.o.loadCPU, secs)}
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.throughOne(ctx, t, fmt.Sprintf("iperf-%s-%d", t.name, round), "tcp", port, func(front int, r *running) error {
			argv := e.loadArgv("iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(front), "-t", strconv.Itoa(secs), "-J")
			m := startMeter(r.pids, e.o.proxyCPU, e.o.loadCPU)
			run, err := runLoad(ctx, time.Duration(secs+30)*time.Second, nil, argv...)
			u := m.stop()
			if err != nil {
				return err
			}
			res, err := parseIperf3(run.out)
			if err != nil {
				return err
			}
			s.command(t.name, argv)
			figs := figures{"gbps": res.Gbps, "secs": res.Seconds}
			u.put(figs, "")
			if u.HaveProxies && u.ProxyCPU > 0 {
				figs["gbit_per_cpu_s"] = res.Gbps * res.Seconds / u.ProxyCPU.Seconds()
				figs["proxy_cpu_share"] = u.ProxyCPU.Seconds() / res.Seconds
			}
			if u.HaveProxies && u.ProxyBusy > 0 {
				figs["gbit_per_busy_s"] = res.Gbps * res.Seconds / u.ProxyBusy.Seconds()
			}
			e.foreign(s, t, u)
			e.logf("iperf3 %s: %.2f Gbit/s", t.name, res.Gbps)
			s.add(t.name, figs)
			return nil
		})
	})
	s.Rows = []row{
		{Label: "throughput", Unit: "Gbit/s", Metric: "gbps", Goal: ratioGoal(e.tethers[0].name+"/direct", 0.9, false)},
		{Label: "Gbit per proxy CPU-s", Unit: "Gbit/CPU-s", Metric: "gbit_per_cpu_s"},
		{Label: fmt.Sprintf("Gbit per CPU-%d busy s", e.o.proxyCPU), Unit: "Gbit/CPU-s", Metric: "gbit_per_busy_s"},
		{Label: "proxy CPU share (own)", Unit: "CPU", Metric: "proxy_cpu_share"},
	}
	s.Notes = []string{
		"per proxy CPU-s: the proxy's utime+stime (nginx master+worker); per CPU busy s: all busy time of the proxy's CPU in /proc/stat, softirq included",
	}
	return s, nil
}

// runRedis: redis-benchmark -c 50 SET and GET through each target.
func (e *env) runRedis(ctx context.Context) (*section, error) {
	port := e.ports.pick()
	srv, err := e.startServer(ctx, "redis-server", port, "redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--maxclients", "20000", "--daemonize", "no", "--loglevel", "warning")
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	defer e.ps.stop(srv)
	const clients = 50
	ts := e.tcpTargets(true)
	s := newSection("redis", fmt.Sprintf("redis-benchmark -c %d -n %d -t set,get, tcp mode", clients, e.o.redisN), names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{fmt.Sprintf("proxy alone on CPU %d, redis-benchmark and redis-server on CPU %d", e.o.proxyCPU, e.o.loadCPU)}
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.throughOne(ctx, t, fmt.Sprintf("redis-%s-%d", t.name, round), "tcp", port, func(front int, r *running) error {
			argv := e.loadArgv("redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(front), "-c", strconv.Itoa(clients),
				"-n", strconv.Itoa(e.o.redisN), "-t", "set,get", "--csv")
			m := startMeter(r.pids, e.o.proxyCPU, e.o.loadCPU)
			run, err := runLoad(ctx, 5*time.Minute, nil, argv...)
			u := m.stop()
			if err != nil {
				return err
			}
			rps, err := parseRedisCSV(string(run.out))
			if err != nil {
				return err
			}
			s.command(t.name, argv)
			figs := figures{"set_rps": rps["SET"], "get_rps": rps["GET"]}
			u.put(figs, "")
			if u.HaveProxies && u.ProxyCPU > 0 {
				figs["req_per_cpu_s"] = 2 * float64(e.o.redisN) / u.ProxyCPU.Seconds()
			}
			if u.HaveProxies && u.ProxyBusy > 0 {
				figs["req_per_busy_s"] = 2 * float64(e.o.redisN) / u.ProxyBusy.Seconds()
			}
			e.foreign(s, t, u)
			e.logf("redis %s: SET %.0f GET %.0f req/s", t.name, rps["SET"], rps["GET"])
			s.add(t.name, figs)
			return nil
		})
	})
	s.Rows = []row{
		{Label: "SET", Unit: "req/s", Metric: "set_rps"},
		{Label: "GET", Unit: "req/s", Metric: "get_rps"},
		{Label: "req per proxy CPU-s", Unit: "req/CPU-s", Metric: "req_per_cpu_s", Goal: betterPeer(e.tethers[0].name, false)},
		{Label: fmt.Sprintf("req per CPU-%d busy s", e.o.proxyCPU), Unit: "req/CPU-s", Metric: "req_per_busy_s"},
	}
	return s, nil
}

// foreign warns when other processes took over 5% of the proxy's CPU
// during a run: its figures are disturbed.
func (e *env) foreign(s *section, t target, u usage) {
	if u.HaveProxies && u.Foreign > 0.05 {
		s.warn(fmt.Sprintf("%s: other processes took %.0f%% of CPU %d during a run: disturbed (busy host?)", t.name, 100*u.Foreign, e.o.proxyCPU))
	}
}

// startIdleconns starts bench/idleconns with args on the load CPU.
func (e *env) startIdleconns(name string, args ...string) (*proc, error) {
	return e.ps.start(name, nil, append([]string{"taskset", "-c", strconv.Itoa(e.o.loadCPU), e.idleconns, "-stdin=false"}, args...)...)
}

// logCount reads idleconns' last "word N" from p's log.
func logCount(p *proc, word string) (int, bool) {
	b, _ := os.ReadFile(p.log)
	return lastCount(string(b), word)
}

// waitReady waits until idleconns printed "ready", or exited.
func waitReady(ctx context.Context, p *proc, within time.Duration) error {
	waitUntil(ctx, within, func() bool {
		_, ok := logCount(p, "ready")
		return ok || !p.alive()
	})
	if _, ok := logCount(p, "ready"); !ok {
		return fmt.Errorf("idleconns not ready: %s", p.tail(3))
	}
	return nil
}

// runIdleTCP: RSS and fds per idle proxied tcp conn: N conns through a
// fresh proxy to a holder that never reads, then N more.
func (e *env) runIdleTCP(ctx context.Context) (*section, error) {
	ts := e.tcpTargets(false)
	n := e.o.idleConns
	n2 := e.secondBatch(n, 2)
	s := newSection("idle", fmt.Sprintf("idle proxied tcp conns — %d through a fresh proxy to a holder (bench/idleconns -hold), then %d more", n, n2), names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{fmt.Sprintf("RSS read %v after each batch; proxy alone on CPU %d, idleconns on CPU %d", e.o.idleSettle, e.o.proxyCPU, e.o.loadCPU)}
	e.eachRound(ctx, ts, func(round int, t target) error {
		hold := e.ports.pick()
		holder, err := e.startIdleconns(fmt.Sprintf("holder-%s-%d", t.name, round), "-hold", "127.0.0.1:"+strconv.Itoa(hold))
		if err != nil {
			return err
		}
		defer e.ps.stop(holder)
		if err := waitListen(ctx, holder, 15*time.Second, hold); err != nil {
			return err
		}
		// waitListen's own probe conn is counted by the holder; take it as the base.
		_ = sleep(ctx, 200*time.Millisecond)
		return e.throughOne(ctx, t, fmt.Sprintf("idle-%s-%d", t.name, round), "tcp", hold, func(front int, r *running) error {
			figs, argv, _, err := e.idleBatches(ctx, t, r, front, 0, n, n2, nil, func() int { c, _ := logCount(holder, "accepted"); return c })
			if argv != nil {
				s.command(t.name, argv)
			}
			if figs != nil {
				s.add(t.name, figs)
			}
			return err
		})
	})
	// Issue 13: at most 8 KiB per idle proxied tcp conn over the whole batch.
	s.Rows = append(idleRSSRows(n, n2, boundGoal(e.tethers[0].name, 8, "KiB", true)),
		row{Label: "kernel memory per conn (system-wide, noisy)", Unit: "KiB", Metric: "kernel_kib_per_conn", Lower: true},
		row{Label: "fds per conn", Unit: "fds", Metric: "fds_per_conn", Lower: true},
	)
	s.Notes = []string{
		"RSS: the proxy's VmRSS (nginx master + worker) after the batch minus before the first connect, per conn; the first batch includes what a fresh proxy touches once",
		"marginal: growth from the first reading to the second, per conn of the second batch; a Go runtime may return the first batch's stacks in between, so it can read low",
		"kernel memory: MemTotal-MemFree-Buffers-Cached-AnonPages delta per conn; it includes all 4 sockets of a proxied conn, so only differences between columns are the proxy's",
	}
	return s, nil
}

// idleBatches opens a batch of n idle conns to front, then n2 more on top
// (none when 0), and reads the proxy's memory after each; with backPort, it also counts the proxy's
// established conns to the backend after the first. held returns how many conns the far end holds
// (tcp: the holder's accepted count; nil: not checked).
func (e *env) idleBatches(ctx context.Context, t target, r *running, front, backPort, n, n2 int, extra []string, held func() int) (figs figures, argv []string, negotiated string, err error) {
	_ = sleep(ctx, time.Second)
	rss0, fds0, kern0 := sumRSS(r.pids), sumFDs(r.pids), kernelKiB()
	base := 0
	if held != nil {
		base = held()
	}
	args := append([]string{"-n", strconv.Itoa(n), "-timeout", "60s"}, extra...)
	args = append(args, "-connect", "127.0.0.1:"+strconv.Itoa(front))
	argv = append([]string{"taskset", "-c", strconv.Itoa(e.o.loadCPU), "idleconns", "-stdin=false"}, args...)
	c1, err := e.startIdleconns("idleconns-"+r.proc.name, args...)
	if err != nil {
		return nil, argv, "", err
	}
	defer e.ps.stop(c1)
	if err := waitReady(ctx, c1, 70*time.Second); err != nil {
		return nil, argv, "", err
	}
	if held != nil && !waitUntil(ctx, 30*time.Second, func() bool { return held() >= base+n }) {
		return nil, argv, "", fmt.Errorf("only %d of %d conns reached the holder", held()-base, n)
	}
	_ = sleep(ctx, e.o.idleSettle)
	if !r.alive() {
		return nil, argv, "", fmt.Errorf("%s died holding the conns", t.name)
	}
	rss1, fds1, kern1 := sumRSS(r.pids), sumFDs(r.pids), kernelKiB()
	figs = figures{
		"n": float64(n), "rss0_kib": float64(rss0), "rss1_kib": float64(rss1), "fds0": float64(fds0), "fds1": float64(fds1),
		"kib_per_conn":        float64(rss1-rss0) / float64(n),
		"fds_per_conn":        float64(fds1-fds0) / float64(n),
		"kernel_kib_per_conn": float64(kern1-kern0) / float64(n),
	}
	closed1, _ := logCount(c1, "closed")
	if b, err := os.ReadFile(c1.log); err == nil {
		negotiated = tlsLine(string(b))
	}
	figs["closed"] = float64(closed1)
	if backPort > 0 {
		figs["backend_conns"] = float64(establishedTo(backPort))
	}
	if n2 == 0 {
		e.logf("%s idle: RSS %d -> %d kB for %d conns (%.1f KiB/conn), fds %d -> %d; no second batch (fd limit)", t.name, rss0, rss1, n, figs["kib_per_conn"], fds0, fds1)
		return figs, argv, negotiated, nil
	}
	// The second batch (n2 conns), on top.
	held1 := base + n
	if held != nil {
		held1 = held()
	}
	args2 := append([]string{"-n", strconv.Itoa(n2)}, args[2:]...)
	c2, err := e.startIdleconns("idleconns2-"+r.proc.name, args2...)
	if err != nil {
		return figs, argv, "", err
	}
	defer e.ps.stop(c2)
	if err := waitReady(ctx, c2, 70*time.Second); err != nil {
		return figs, argv, "", fmt.Errorf("second batch: %w", err)
	}
	got := n2
	if held != nil {
		// The holder shares CPU 1 with the clients and may drop SYNs of the
		// burst; a proxy then resets those clients after its connect
		// timeout. Count what is held.
		waitUntil(ctx, 15*time.Second, func() bool { return held() >= held1+n2 })
	}
	_ = sleep(ctx, e.o.idleSettle)
	if held != nil {
		got = held() - held1
	}
	closed2, _ := logCount(c2, "closed")
	if got > 0 && closed2 == 0 && r.alive() {
		rss2 := sumRSS(r.pids)
		figs["rss2_kib"] = float64(rss2)
		figs["marginal_kib_per_conn"] = float64(rss2-rss1) / float64(got)
		figs["both_kib_per_conn"] = float64(rss2-rss0) / float64(n+got)
		figs["n2"] = float64(got)
	}
	e.logf("%s idle: RSS %d -> %d kB for %d conns (%.1f KiB/conn), fds %d -> %d", t.name, rss0, rss1, n, figs["kib_per_conn"], fds0, fds1)
	return figs, argv, negotiated, nil
}

// idleRSSRows are the memory rows both idle-conn scenarios (tcp relays,
// keepalive client conns) report for batches of n conns; g (may be nil)
// judges the whole batch's figure.
func idleRSSRows(n, n2 int, g *goal) []row {
	return []row{
		{Label: fmt.Sprintf("RSS per conn, whole batch of %d (issue 13)", n), Unit: "KiB", Metric: "kib_per_conn", Lower: true, Goal: g},
		{Label: fmt.Sprintf("RSS per conn, a second %d on top (marginal, info)", n2), Unit: "KiB", Metric: "marginal_kib_per_conn", Lower: true},
		{Label: "RSS per conn, both batches (info)", Unit: "KiB", Metric: "both_kib_per_conn", Lower: true},
	}
}
