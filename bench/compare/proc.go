package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs owns every long-running process the program starts (proxies,
// backends, idle holders): each runs in a process group of its own, so that
// stopping it also stops what it forked (nginx's workers), and nothing
// outside those groups is ever signalled.
type procs struct {
	tmp string // logs go to tmp/NAME.log

	mu      sync.Mutex
	running map[*proc]struct{}
}

// proc is one started process (the group leader; taskset and env exec, so
// its pid is the program's own).
type proc struct {
	name string
	log  string // path of its stdout+stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done
}

func newProcs(tmp string) *procs {
	return &procs{tmp: tmp, running: make(map[*proc]struct{})}
}

// start runs argv in the background with extra environment variables,
// its output to tmp/name.log.
func (ps *procs) start(name string, env []string, argv ...string) (*proc, error) {
	logPath := filepath.Join(ps.tmp, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go p.wait()
	ps.mu.Lock()
	ps.running[p] = struct{}{}
	ps.mu.Unlock()
	return p, nil
}

func (p *proc) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tail returns the last lines of the process's log, for a warning.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// stop sends SIGTERM to the process's group, waits up to 5 s, then SIGKILLs
// the group.
func (ps *procs) stop(p *proc) {
	if p == nil {
		return
	}
	pgid := p.pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	// The leader may be gone while a worker of its group lingers.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	ps.mu.Lock()
	delete(ps.running, p)
	ps.mu.Unlock()
}

// stopAll stops whatever still runs, newest first does not matter: each
// group is independent.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	all := make([]*proc, 0, len(ps.running))
	for p := range ps.running {
		all = append(all, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() { defer wg.Done(); ps.stop(p) }()
	}
	wg.Wait()
}

// children returns the pids whose parent is pid (nginx's workers).
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// waitListen waits until every port accepts a connection on 127.0.0.1, while
// p (when not nil) is alive.
func waitListen(ctx context.Context, p *proc, within time.Duration, ports ...int) error {
	deadline := time.Now().Add(within)
	for _, port := range ports {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if p != nil && !p.alive() {
				return fmt.Errorf("%s exited before listening on %d: %s", p.name, port, p.tail(5))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nothing listens on :%d after %v", port, within)
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitUntil polls cond every 100 ms for up to within.
func waitUntil(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) || sleep(ctx, 100*time.Millisecond) != nil {
			return cond()
		}
	}
	return true
}

// loadRun is what a bounded load command did.
type loadRun struct {
	argv   []string
	out    []byte        // stdout
	errOut []byte        // stderr
	cpu    time.Duration // its user+system time (rusage of the child)
	wall   time.Duration
}

// command is argv as a shell would show it, for the report.
func command(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \"'$;&|<>") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// runLoad runs a load generator to its end, bounded by limit: past it the
// whole group is killed. Its stdout is kept whole (they are small).
func runLoad(ctx context.Context, limit time.Duration, env []string, argv ...string) (*loadRun, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	err := cmd.Run()
	r := &loadRun{argv: argv, out: []byte(out.String()), errOut: []byte(errOut.String()), wall: time.Since(t0)}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("killed after %v: %w", limit, err)
		}
		return r, fmt.Errorf("%s: %w: %s", argv[0], err, firstBytes(r.errOut, r.out))
	}
	return r, nil
}

func firstBytes(bs ...[]byte) string {
	var s string
	for _, b := range bs {
		s += strings.TrimSpace(string(b)) + " "
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.TrimSpace(s)
}
