package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errNoPtrace is strace failing to attach: the figures are not there, and
// the report says why instead of inventing them.
var errNoPtrace = errors.New("strace could not attach (ptrace not permitted?)")

// syscallLoads are the loads of the syscalls table.
var syscallLoads = []struct{ key, name string }{
	{"ka", "http keepalive"},
	{"close", "http Connection: close"},
	{"connect", "tcp connect"},
}

// straceDur is how long each traced load runs: short, as strace slows the
// proxy many times over (the figures are per request, not per second).
func (e *env) straceDur() time.Duration {
	if e.o.quick {
		return time.Second
	}
	return 3 * time.Second
}

// allTraced reports whether every thread of every pid has a tracer.
func allTraced(pids []int) bool {
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		if len(tasks) == 0 {
			return false
		}
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil || statusField(string(b), "TracerPid:") == 0 {
				return false
			}
		}
	}
	return true
}

// traced runs load while strace (with args, following threads and forks)
// is attached to pids, and returns what strace wrote to its -o file and
// the requests load completed. strace is interrupted once load ends: it
// detaches and, with -c, writes its table.
func (e *env) traced(ctx context.Context, tag string, pids []int, args []string, load func() (int64, error)) (string, int64, error) {
	out := filepath.Join(e.tmp, tag+".strace")
	argv := append([]string{"strace", "-f", "-o", out}, args...)
	for _, p := range pids {
		argv = append(argv, "-p", strconv.Itoa(p))
	}
	st, err := e.ps.start(tag+"-strace", nil, argv...)
	if err != nil {
		return "", 0, err
	}
	defer e.ps.stop(st)
	waitUntil(ctx, 10*time.Second, func() bool { return allTraced(pids) || !st.alive() })
	if !st.alive() || !allTraced(pids) {
		return "", 0, fmt.Errorf("%w: %s", errNoPtrace, st.tail(3))
	}
	reqs, lerr := load()
	_ = syscall.Kill(st.pid(), syscall.SIGINT)
	select {
	case <-st.done:
	case <-time.After(30 * time.Second):
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return "", reqs, err
	}
	return string(b), reqs, lerr
}

// syscallPasses traces one load twice: strace -c for the calls, then
// strace -e status=failed for the errno of each failed call (strace -c
// counts failures but not by errno); each pass's figures are divided by
// the requests of that pass.
func (e *env) syscallPasses(ctx context.Context, tag string, pids []int, load func() (int64, error)) (figures, straceSummary, []string, error) {
	text, reqs, err := e.traced(ctx, tag+"-c", pids, []string{"-c"}, load)
	if err != nil {
		return nil, straceSummary{}, nil, err
	}
	sum, err := parseStraceSummary(text)
	if err != nil {
		return nil, sum, nil, err
	}
	if reqs <= 0 {
		return nil, sum, nil, fmt.Errorf("the traced load completed no request")
	}
	_ = sleep(ctx, 300*time.Millisecond)
	ftext, reqs2, err := e.traced(ctx, tag+"-failed", pids, []string{"-qq", "-e", "status=failed"}, load)
	var failed map[string]int64
	if err == nil {
		failed = failedCalls(ftext)
	} else {
		e.warnf("syscalls %s: the failed-calls pass: %v", tag, err)
	}
	return syscallFigures(sum, reqs, failed, reqs2), sum, topFailed(failed, reqs2, 4), nil
}

// runSyscalls: strace -c -f on each proxy's processes during a separate,
// short load of each kind (not the timed runs: strace slows the proxy),
// and the syscalls per request.
func (e *env) runSyscalls(ctx context.Context) (*section, error) {
	if !hasProgram("strace") {
		return nil, fmt.Errorf("strace is missing (apt-get install strace): no syscall figures")
	}
	ts := e.peers(false, true)
	back, all := e.backendPorts(roundKeys(1, names(ts)...))
	be, err := e.startBackend(ctx, "nginx-backend-syscalls", all)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(be.proc)
	echoPort := e.ports.pick()
	echo, err := e.startEcho(ctx, "echo-syscalls", echoPort)
	if err != nil {
		return nil, err
	}
	defer e.ps.stop(echo)
	d := e.straceDur()
	s := newSection("syscalls", "syscalls per request — strace -c -f on the proxy's processes (nginx master + worker), a separate short load of each kind", names(ts)...)
	s.Ratios = e.peerRatios(ts)
	s.Setup = []string{
		fmt.Sprintf("loads of %v each, as the timed runs but traced: wrk -c %d -t %d (keepalive; -H \"Connection: close\"), tether bench --protocol tcp --conn short --size %d -c %d", d, wrkConns, wrkThreads, connectSize, connectClients),
		"two passes per load: strace -c -f -p PIDS (calls and failures per syscall), then strace -f -e status=failed -p PIDS (the errno of each failure); each divided by its own pass's completed requests",
	}
	noPtrace := false
	for _, t := range ts {
		if ctx.Err() != nil || noPtrace {
			break
		}
		err := e.syscallsOf(ctx, s, t, be, back[t.name+".1"], echoPort, d)
		if errors.Is(err, errNoPtrace) {
			noPtrace = true
			s.warn(fmt.Sprintf("NO FIGURES: %v; strace needs ptrace on the proxy's processes (CAP_SYS_PTRACE, or kernel.yama.ptrace_scope 0)", err))
		} else if err != nil {
			e.warnf("syscalls %s: %v", t.name, err)
		}
	}
	for _, l := range syscallLoads {
		k := l.key + "."
		s.Rows = append(s.Rows, row{Group: l.name, Label: "total", Unit: "calls/req", Metric: k + "total", Lower: true})
		for _, g := range syscallGroups {
			s.Rows = append(s.Rows, row{Group: l.name, Label: g.label, Unit: "calls/req", Metric: k + g.key, Lower: true})
		}
		s.Rows = append(s.Rows,
			row{Group: l.name, Label: "other calls", Unit: "calls/req", Metric: k + "other", Lower: true},
			row{Group: l.name, Label: "failed calls (all errnos; strace -c)", Unit: "calls/req", Metric: k + "errors", Lower: true},
			row{Group: l.name, Label: "EAGAIN, any call (status=failed pass)", Unit: "calls/req", Metric: k + "eagain", Lower: true},
			row{Group: l.name, Label: "EAGAIN on reads (status=failed pass)", Unit: "calls/req", Metric: k + "read_eagain", Lower: true},
			row{Group: l.name, Label: "requests traced (strace -c pass)", Unit: "count", Metric: k + "requests"},
		)
	}
	s.Notes = []string{
		"calls/req: the calls strace counted over the traced load / the requests (or conns) that load completed; tether's include its Go runtime's (futex, nanosleep, rt_sigreturn of preemption)",
		"every syscall's count per request is in the JSON (sys.NAME); the most frequent ones of each run are listed below",
	}
	return s, nil
}

// syscallsOf traces t under the three loads.
func (e *env) syscallsOf(ctx context.Context, s *section, t target, be *backend, backPort, echoPort int, d time.Duration) error {
	pairs := []pair{{e.ports.pick(), backPort}, {e.ports.pick(), backPort}}
	r, err := e.startProxy(ctx, t, "syscalls-http-"+t.name, e.proxyConfigFor("http", pairs...))
	if err != nil {
		return err
	}
	figs := figures{}
	for i, l := range syscallLoads[:2] {
		closeEach := l.key == "close"
		argv := e.wrkArgvFor(wrkConns, wrkThreads, d, closeEach, "http://127.0.0.1:"+strconv.Itoa(pairs[i].Front)+"/")
		load := func() (int64, error) {
			run, err := runLoad(ctx, d+time.Minute, nil, argv...)
			if err != nil {
				return 0, err
			}
			w, err := parseWrk(string(run.out))
			return w.Requests, err
		}
		f, sum, fails, err := e.syscallPasses(ctx, fmt.Sprintf("syscalls-%s-%s", l.key, t.name), r.pids, load)
		if err != nil {
			e.stopProxy(r)
			return fmt.Errorf("%s: %w", l.name, err)
		}
		s.command(t.name, append([]string{"strace", "-c", "-f", "-p", "PIDS", "during"}, argv...))
		e.putSyscalls(s, t, l.key, l.name, f, sum, fails)
		for k, v := range f {
			figs[l.key+"."+k] = v
		}
		if !r.alive() {
			break
		}
	}
	e.stopProxy(r)
	if t.kind == nginx && e.streamModule == "" {
		s.add(t.name, figs)
		return nil
	}
	err = e.throughOne(ctx, t, "syscalls-tcp-"+t.name, "tcp", echoPort, func(front int, r *running) error {
		argv := e.connectArgv(front, d)
		load := func() (int64, error) {
			run, err := runLoad(ctx, d+time.Minute, nil, argv...)
			if err != nil {
				return 0, err
			}
			res, err := parseTetherBench(run.out)
			if err != nil {
				return 0, err
			}
			return res[0].OK, nil
		}
		f, sum, fails, err := e.syscallPasses(ctx, "syscalls-connect-"+t.name, r.pids, load)
		if err != nil {
			return fmt.Errorf("tcp connect: %w", err)
		}
		s.command(t.name, append([]string{"strace", "-c", "-f", "-p", "PIDS", "during"}, argv...))
		e.putSyscalls(s, t, "connect", "tcp connect", f, sum, fails)
		for k, v := range f {
			figs["connect."+k] = v
		}
		return nil
	})
	s.add(t.name, figs)
	return err
}

// putSyscalls logs one traced load's result and lists its top calls.
func (e *env) putSyscalls(s *section, t target, key, name string, f figures, sum straceSummary, fails []string) {
	s.Text[fmt.Sprintf("top calls, %s, %s", name, t.name)] = fmt.Sprintf("%s (over %.0f requests)", strings.Join(topCalls(sum, 8), ", "), f["requests"])
	if len(fails) > 0 {
		s.Text[fmt.Sprintf("top failures per request, %s, %s", name, t.name)] = strings.Join(fails, ", ")
	}
	e.logf("syscalls %s %s: %.1f per request (%.0f requests traced), EAGAIN %.2f", key, t.name, f["total"], f["requests"], f["eagain"])
}
