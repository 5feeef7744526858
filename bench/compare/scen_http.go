package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// HTTP loads: issue 13's wrk -t1 -c50.
const (
	wrkConns   = 50
	wrkThreads = 1
)

// httpScenarios are the two client behaviours of the http table.
var httpScenarios = []struct{ key, name string }{
	{"ka", "keepalive"},
	{"close", "Connection: close"},
}

// wrkArgv is wrk against url, on the load CPU.
func (e *env) wrkArgv(conns, threads int, closeEach bool, url string) []string {
	return e.wrkArgvFor(conns, threads, e.o.dur, closeEach, url)
}

// wrkArgvFor is wrkArgv for d.
func (e *env) wrkArgvFor(conns, threads int, d time.Duration, closeEach bool, url string) []string {
	argv := e.loadArgv("wrk", "-c", strconv.Itoa(conns), "-t", strconv.Itoa(threads), "-d", secsFlag(d), "--latency")
	if closeEach {
		argv = append(argv, "-H", "Connection: close")
	}
	return append(argv, url)
}

// runWrk runs wrk and measures the proxy (pids) meanwhile.
func (e *env) runWrk(ctx context.Context, argv []string, pids []int) (figures, usage, error) {
	m := startMeter(pids, e.o.proxyCPU, e.o.loadCPU)
	run, err := runLoad(ctx, e.o.dur+30*time.Second, nil, argv...)
	u := m.stop()
	if err != nil {
		return nil, u, err
	}
	w, err := parseWrk(string(run.out))
	if err != nil {
		return nil, u, err
	}
	figs := figures{}
	w.put(figs)
	u.put(figs, "")
	if u.HaveProxies && u.ProxyCPU > 0 {
		figs["req_per_cpu_s"] = float64(w.Requests) / u.ProxyCPU.Seconds()
	}
	return figs, u, nil
}

// prefixed copies figs with prefix on every name.
func prefixed(prefix string, figs figures) figures {
	out := figures{}
	for k, v := range figs {
		out[prefix+k] = v
	}
	return out
}

// betterPeer is issue 13's goal: tether at least the better of HAProxy
// and nginx (the higher value, or the lower for a lower-is-better row).
func betterPeer(col string, lower bool) *goal {
	text := col + " >= better peer"
	if lower {
		text = col + " <= better peer"
	}
	return &goal{Text: text, Check: func(v map[string]*float64) (bool, bool) {
		t, best := v[col], better(lower, v["haproxy"], v["nginx"])
		if t == nil || best == nil {
			return false, false
		}
		if lower {
			return *t <= *best, true
		}
		return *t >= *best, true
	}, Says: func(v map[string]*float64, unit string) string {
		return versus(v, col, betterPeerCol, better(lower, v["haproxy"], v["nginx"]), unit)
	}}
}

// runHTTP: wrk with keepalive clients and with Connection: close clients
// (the member pooled) to an nginx backend, direct and through each proxy;
// then TIME_WAIT by side.
func (e *env) runHTTP(ctx context.Context) ([]*section, error) {
	ts := e.peers(true, true)
	back := map[string]int{} // target.scen.round → backend port
	var all []int
	for r := 1; r <= e.o.rounds; r++ {
		for _, t := range ts {
			for _, sc := range httpScenarios {
				p := e.ports.pick()
				back[fmt.Sprintf("%s.%s.%d", t.name, sc.key, r)] = p
				all = append(all, p)
			}
		}
	}
	be, err := e.startBackend(ctx, "nginx-backend-http", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("http", "HTTP/1.1 — 64-byte body from an nginx backend", names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{
		fmt.Sprintf("wrk -c %d -t %d -d %v --latency; proxy alone on CPU %d (tether GOMAXPROCS=1, HAProxy nbthread 1, nginx 1 worker), wrk and the backend on CPU %d",
			wrkConns, wrkThreads, e.o.dur, e.o.proxyCPU, e.o.loadCPU),
		fmt.Sprintf("pooling at each one's best: HAProxy http-reuse always, nginx upstream keepalive %d (HTTP/1.1, empty Connection), tether reuse shared (max_idle %d, member max_connections %d)",
			nginxKeepalive, tetherPoolMax, tetherPoolMax),
	}
	e.eachRound(ctx, ts, func(round int, t target) error {
		pairs := e.httpPairs(t, round, back)
		r, err := e.startProxy(ctx, t, fmt.Sprintf("http-%s-%d", t.name, round), e.proxyConfigFor("http", pairs...))
		if err != nil {
			return err
		}
		defer e.stopProxy(r)
		for i, sc := range httpScenarios {
			figs, err := e.wrkThrough(ctx, s, t, r, be, pairs[i], sc.key == "close")
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			s.add(t.name, prefixed(sc.key+".", figs))
		}
		return nil
	})
	for _, sc := range httpScenarios {
		k := sc.key + "."
		s.Rows = append(s.Rows,
			row{Group: sc.name, Label: "requests/s", Unit: "req/s", Metric: k + "rps"},
			row{Group: sc.name, Label: "p99 latency", Unit: "ms", Metric: k + "p99_ms", Lower: true},
			row{Group: sc.name, Label: "p50 latency", Unit: "ms", Metric: k + "p50_ms", Lower: true},
			row{Group: sc.name, Label: "req per proxy CPU-s", Unit: "req/CPU-s", Metric: k + "req_per_cpu_s", Goal: betterPeer(e.tethers[0].name, false)},
			row{Group: sc.name, Label: "backend conns opened", Unit: "conns", Metric: k + "backend_conns", Lower: true},
			row{Group: sc.name, Label: "errors (socket + non-2xx)", Unit: "count", Metric: k + "errors", Lower: true},
		)
	}
	s.Notes = []string{
		"per proxy CPU-s: wrk's request count / the proxy's utime+stime over the run, nginx master+worker summed",
		"backend conns: the backend nginx's stub_status accepts delta; direct = wrk's own connections",
	}
	tw := newSection("http-timewait", "TIME_WAIT sockets 1 s after wrk ends, by the side that closed first (sock_diag, by port)", s.Columns...)
	tw.Samples = s.Samples
	for _, sc := range httpScenarios {
		k := sc.key + "."
		tw.Rows = append(tw.Rows,
			row{Group: sc.name, Label: "client (wrk closed first)", Unit: "sockets", Metric: k + "tw_client"},
			row{Group: sc.name, Label: "proxy front", Unit: "sockets", Metric: k + "tw_front"},
			row{Group: sc.name, Label: "proxy back", Unit: "sockets", Metric: k + "tw_back"},
			row{Group: sc.name, Label: "backend (nginx closed first)", Unit: "sockets", Metric: k + "tw_backend"},
			row{Group: sc.name, Label: "kernel dropped (tcp_max_tw_buckets)", Unit: "sockets", Metric: k + "tw_overflow"},
		)
	}
	tw.Notes = []string{"when the kernel dropped TIME_WAIT sockets the counts above are lower bounds; direct has no proxy sides"}
	return []*section{s, tw}, nil
}

// wrkThrough runs one wrk scenario through r on p and adds the member
// conns opened and TIME_WAIT by side.
func (e *env) wrkThrough(ctx context.Context, s *section, t target, r *running, be *backend, p pair, closeEach bool) (figures, error) {
	argv := e.wrkArgv(wrkConns, wrkThreads, closeEach, "http://127.0.0.1:"+strconv.Itoa(p.Front)+"/")
	a0, aerr0 := be.accepts()
	o0 := timeWaitOverflow()
	figs, u, err := e.runWrk(ctx, argv, r.pids)
	if err != nil {
		return nil, err
	}
	if !r.alive() {
		return nil, fmt.Errorf("%s died during wrk: %s", t.name, r.proc.tail(5))
	}
	s.command(t.name, argv)
	e.foreign(s, t, u)
	_ = sleep(ctx, time.Second) // the last closes finish before TIME_WAIT is counted
	if sides, err := timeWaitBySide(p.Front, p.Back); err == nil {
		figs["tw_client"], figs["tw_backend"] = float64(sides.Client), float64(sides.Backend)
		if t.kind != direct {
			figs["tw_front"], figs["tw_back"] = float64(sides.Front), float64(sides.Back)
		}
	}
	figs["tw_overflow"] = float64(timeWaitOverflow() - o0)
	if a1, err := be.accepts(); err == nil && aerr0 == nil {
		figs["backend_conns"] = float64(a1 - a0 - 1) // the first reading's own conn
	}
	e.logf("wrk %s %s: %.0f req/s, p99 %.2f ms, %.0f req/CPU-s, backend conns %.0f, errors %.0f",
		map[bool]string{false: "ka", true: "close"}[closeEach], t.name, figs["rps"], figs["p99_ms"], figs["req_per_cpu_s"], figs["backend_conns"], figs["errors"])
	return figs, nil
}

// runIdleKeepalive: RSS per idle keepalive client conn (proto http or
// https): N conns that each did one GET, through a fresh proxy, then N more.
func (e *env) runIdleKeepalive(ctx context.Context, proto string) (*section, error) {
	ts := e.peers(false, true)
	n := e.o.idleKAConns
	n2 := e.secondBatch(n, 1)
	back := map[string]int{}
	var all []int
	for r := 1; r <= e.o.rounds; r++ {
		for _, t := range ts {
			p := e.ports.pick()
			back[fmt.Sprintf("%s.%d", t.name, r)] = p
			all = append(all, p)
		}
	}
	be, err := e.startBackend(ctx, "nginx-backend-idle-"+proto, all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	s := newSection("idle-"+proto, fmt.Sprintf("idle keepalive client conns, %s — %d through a fresh proxy, each after one GET /, then %d more", proto, n, n2), names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{fmt.Sprintf("RSS read %v after each batch; proxy alone on CPU %d, bench/idleconns and the backend on CPU %d", e.o.idleSettle, e.o.proxyCPU, e.o.loadCPU)}
	if proto == "https" {
		s.Setup = append(s.Setup, "TLS 1.3 (ECDSA P-256 certificate; HAProxy and nginx pinned to X25519 and TLS_AES_128_GCM_SHA256; the client offers X25519 only)")
	}
	extra := []string{"-request", "/"}
	if proto == "https" {
		extra = append(extra, "-cacert", e.tls.Cert)
	}
	e.eachRound(ctx, ts, func(round int, t target) error {
		b := back[fmt.Sprintf("%s.%d", t.name, round)]
		return e.throughOne(ctx, t, fmt.Sprintf("idle-%s-%s-%d", proto, t.name, round), proto, b, func(front int, r *running) error {
			figs, argv, neg, err := e.idleBatches(ctx, t, r, front, b, n, n2, extra, nil)
			if neg != "" {
				s.Text["negotiated "+t.name] = neg
			}
			if argv != nil {
				s.command(t.name, argv)
			}
			if figs != nil {
				s.add(t.name, figs)
			}
			return err
		})
	})
	var g *goal
	if proto == "http" { // issue 13: at most HAProxy's figure (1.2 KiB in its run)
		g = colGoal(e.tethers[0].name, "haproxy", true)
	}
	s.Rows = append(idleRSSRows(n, n2, g),
		row{Label: "fds per conn", Unit: "fds", Metric: "fds_per_conn", Lower: true},
		row{Label: "backend conns held", Unit: "conns", Metric: "backend_conns"},
		row{Label: "conns closed before the reading", Unit: "conns", Metric: "closed", Lower: true},
	)
	s.Notes = []string{
		"RSS: the proxy's VmRSS (nginx master + worker) after the batch minus before the first connect, per conn; marginal: the next batch's growth per conn",
		fmt.Sprintf("backend conns held: the proxy's established conns to its backend port after the first batch (nginx caches %d idle, tether's pool at most %d)", nginxKeepalive, tetherPoolMax),
	}
	return s, nil
}

// httpPairs are t's front/back port pairs for round, one per http
// scenario, on the backend ports reserved in back: direct uses the backend
// port itself, a proxy a fresh front port.
func (e *env) httpPairs(t target, round int, back map[string]int) []pair {
	var pairs []pair
	for _, sc := range httpScenarios {
		b := back[fmt.Sprintf("%s.%s.%d", t.name, sc.key, round)]
		f := b
		if t.kind != direct {
			f = e.ports.pick()
		}
		pairs = append(pairs, pair{f, b})
	}
	return pairs
}
