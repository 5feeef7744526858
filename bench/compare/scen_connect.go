package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// The connect scenario's load: issue 13's "50 clients connect / write 16 B
// / read / close".
const (
	connectClients = 50
	connectSize    = 16
)

// echoFlag, as the first argument, makes this program the connect
// scenario's echo backend instead of the comparison (a hidden mode: the
// comparison re-executes itself, so the backend needs no other program):
//
//	compare -serve-echo 127.0.0.1:PORT
const echoFlag = "-serve-echo"

// echoMain listens on addr and echoes until killed; it returns the exit
// code.
func echoMain(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare -serve-echo:", err)
		return 1
	}
	if err := serveEcho(ln); err != nil {
		fmt.Fprintln(os.Stderr, "compare -serve-echo:", err)
		return 1
	}
	return 0
}

// serveEcho accepts on ln until it is closed, each conn echoed by a
// goroutine of its own that ends with the conn (the client's close). It
// returns nil once ln is closed.
func serveEcho(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// EMFILE and the like under a burst: the client retries or
			// counts an error; the server goes on.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go echoConn(c)
	}
}

// echoConn writes back what it reads until EOF or an error, then closes.
func echoConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// startEcho starts this program's echo mode on the load CPU (GOMAXPROCS=1).
func (e *env) startEcho(ctx context.Context, name string, port int) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("echo backend: %w", err)
	}
	p, err := e.ps.start(name, []string{"GOMAXPROCS=1"}, "taskset", "-c", strconv.Itoa(e.o.loadCPU), self, echoFlag, "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, p, 15*time.Second, port); err != nil {
		e.ps.stop(p)
		return nil, err
	}
	return p, nil
}

// connectArgv is the connect load: tether bench, tcp, a new conn per
// 16-byte echo, 50 workers, for d.
func (e *env) connectArgv(front int, d time.Duration) []string {
	return e.tbenchArgv("--protocol", "tcp", "--conn", "short", "--size", strconv.Itoa(connectSize),
		"-c", strconv.Itoa(connectClients), "-d", secsFlag(d), "127.0.0.1:"+strconv.Itoa(front))
}

// runConnect: the tcp connect rate through each target in tcp mode, and
// conns per proxy CPU-second.
func (e *env) runConnect(ctx context.Context) (*section, error) {
	port := e.ports.pick()
	srv, err := e.startEcho(ctx, "echo-connect", port)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(srv)
	ts := e.tcpTargets(true)
	s := newSection("connect", fmt.Sprintf("tcp connect rate — %d clients, each in a loop: connect, write %d B, read the echo, close (tcp mode)", connectClients, connectSize), names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{fmt.Sprintf("tether bench --protocol tcp --conn short --size %d -c %d -d %v (GOMAXPROCS=1) and the echo backend (this program, -serve-echo, GOMAXPROCS=1) on CPU %d; the proxy alone on CPU %d",
		connectSize, connectClients, e.o.dur, e.o.loadCPU, e.o.proxyCPU)}
	e.eachRound(ctx, ts, func(round int, t target) error {
		return e.throughOne(ctx, t, fmt.Sprintf("connect-%s-%d", t.name, round), "tcp", port, func(front int, r *running) error {
			argv := e.connectArgv(front, e.o.dur)
			figs, _, u, err := e.tetherBench(ctx, s, t, r, argv)
			if err != nil {
				return err
			}
			if u.HaveProxies && u.ProxyCPU > 0 {
				figs["conns_per_cpu_s"] = figs["ok"] / u.ProxyCPU.Seconds()
				figs["proxy_cpu_share"] = u.ProxyCPU.Seconds() / figs["secs"]
			}
			if u.HaveProxies && u.ProxyBusy > 0 {
				figs["conns_per_busy_s"] = figs["ok"] / u.ProxyBusy.Seconds()
			}
			e.logf("connect %s: %.0f conns/s, %.0f per proxy CPU-s, errors %.0f", t.name, figs["rps"], figs["conns_per_cpu_s"], figs["errors"])
			s.add(t.name, figs)
			return nil
		})
	})
	s.Rows = []row{
		{Label: "conns/s", Unit: "conns/s", Metric: "rps"},
		{Label: "conns per proxy CPU-s", Unit: "conns/CPU-s", Metric: "conns_per_cpu_s", Goal: betterPeer(e.tethers[0].name, false)},
		{Label: fmt.Sprintf("conns per CPU-%d busy s", e.o.proxyCPU), Unit: "conns/CPU-s", Metric: "conns_per_busy_s"},
		{Label: "p50 connect+echo+close", Unit: "ms", Metric: "p50_ms", Lower: true},
		{Label: "p99 connect+echo+close", Unit: "ms", Metric: "p99_ms", Lower: true},
		{Label: "proxy CPU share (own)", Unit: "CPU", Metric: "proxy_cpu_share"},
		{Label: fmt.Sprintf("CPU %d busy share (load)", e.o.loadCPU), Unit: "CPU", Metric: "cpu_load_util"},
		{Label: "errors", Unit: "count", Metric: "errors", Lower: true},
	}
	s.Notes = []string{
		"per proxy CPU-s: tether bench's completed conns / the proxy's utime+stime over the run (nginx master+worker)",
		"load CPU near 1.00: the clients and the echo backend were the limit, and conns/s are lower bounds of the proxy's; per CPU-s still compares like for like",
	}
	return s, nil
}
