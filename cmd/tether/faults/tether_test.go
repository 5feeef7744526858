package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy"
)

// The binary under test, built once per run (the first test that needs it
// builds it; TestMain removes it).
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binBuild []byte
	binErr   error
)

func TestMain(m *testing.M) {
	if role := os.Getenv(memberRoleEnv); role != "" {
		os.Exit(memberMain(role))
	}
	dir, err := os.MkdirTemp("", "tether-faults")
	if err != nil {
		panic(err)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

func tetherBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath = filepath.Join(binDir, "tether")
		binBuild, binErr = exec.Command("go", "build", "-o", binPath, "github.com/tetherproxy/tether/cmd/tether").CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("build tether: %v\n%s", binErr, binBuild)
	}
	return binPath
}

// adminAddr is the admin API's address inside lb.
const adminAddr = "127.0.0.1:9901"

// tetherOpts change how startTether runs the binary.
type tetherOpts struct {
	nofile int // RLIMIT_NOFILE, soft and hard (0: inherited)
}

// tetherProc is the real binary running in the lab's lb namespace.
type tetherProc struct {
	t      *testing.T
	l      *lab
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // Wait's result, once done is closed
	admin  *http.Client
	cfg    string
}

// startTether writes cfg (the [admin] table is added: the API on
// 127.0.0.1:9901 inside lb) and runs `tether run -c` in lb. It returns once
// the admin API answers /ready. The test's end stops it with SIGTERM and
// wants exit status 0.
func (l *lab) startTether(cfg string, opts tetherOpts) *tetherProc {
	t := l.t
	t.Helper()
	path := filepath.Join(t.TempDir(), "tether.toml")
	cfg = fmt.Sprintf("[admin]\nlisten = %q\n\n", adminAddr) + cfg
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", l.LB}
	if opts.nofile > 0 {
		args = append(args, "prlimit", fmt.Sprintf("--nofile=%d:%d", opts.nofile, opts.nofile))
	}
	args = append(args, tetherBinary(t), "run", "-c", path)
	p := &tetherProc{t: t, l: l, cmd: exec.Command("ip", args...), stderr: &syncBuffer{}, done: make(chan struct{}), cfg: path}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	p.admin = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, l.LB, addr)
		},
	}}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.admin.CloseIdleConnections()
		if !p.exited() {
			if code := p.stop(10 * time.Second); code != 0 {
				t.Errorf("tether exited %d after SIGTERM\n%s", code, p.logTail())
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := p.admin.Get("http://" + adminAddr + "/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("tether not ready (err %v, exited %v)\n%s", err, p.exited(), p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *tetherProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pid is tether's process id (ip netns exec and prlimit exec it in place).
func (p *tetherProc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to tether.
func (p *tetherProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and returns the exit code (-1 when it had to be
// killed after within).
func (p *tetherProc) stop(within time.Duration) int {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	return p.wait(within)
}

// wait waits for tether to exit and returns its code (-1: killed after
// within).
func (p *tetherProc) wait(within time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// logTail is the last 40 lines tether wrote, for failure messages.
func (p *tetherProc) logTail() string {
	lines := strings.Split(strings.TrimRight(p.stderr.String(), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// logLines returns tether's JSON log lines whose "msg" is msg.
func (p *tetherProc) logLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// get decodes the admin API's JSON answer for path into v.
func (p *tetherProc) get(path string, v any) {
	p.t.Helper()
	resp, err := p.admin.Get("http://" + adminAddr + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v\n%s", path, err, p.logTail())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		p.t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		p.t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// memberView is one member in the admin API's /api/v1/pools.
type memberView struct {
	Address  string                     `json:"address"`
	State    string                     `json:"state"`
	Health   string                     `json:"health"`
	Active   int                        `json:"active"`
	Idle     int                        `json:"idle"`
	Counters pool.MemberStats           `json:"counters"`
	Reuse    map[string]pool.ReuseStats `json:"reuse"`
}

// members returns pool name's members by address.
func (p *tetherProc) members(name string) map[string]memberView {
	p.t.Helper()
	var body struct {
		Pools []struct {
			Name    string       `json:"name"`
			Members []memberView `json:"members"`
		} `json:"pools"`
	}
	p.get("/api/v1/pools", &body)
	for _, pl := range body.Pools {
		if pl.Name == name {
			out := map[string]memberView{}
			for _, m := range pl.Members {
				out[m.Address] = m
			}
			return out
		}
	}
	p.t.Fatalf("no pool %q in /api/v1/pools", name)
	return nil
}

// vsStats returns virtual server name's connection counters.
func (p *tetherProc) vsStats(name string) proxy.Stats {
	p.t.Helper()
	var body struct {
		VS []struct {
			Name        string      `json:"name"`
			Connections proxy.Stats `json:"connections"`
		} `json:"virtual_servers"`
	}
	p.get("/api/v1/virtual-servers", &body)
	for _, vs := range body.VS {
		if vs.Name == name {
			return vs.Connections
		}
	}
	p.t.Fatalf("no virtual server %q", name)
	return proxy.Stats{}
}

// metric returns the value of the /metrics sample whose line starts with
// name (labels included, e.g. `go_goroutines` or
// `tether_connections_active{virtual_server="web"}`).
func (p *tetherProc) metric(name string) float64 {
	p.t.Helper()
	resp, err := p.admin.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		p.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				p.t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	p.t.Fatalf("no metric %s in /metrics", name)
	return 0
}

// fds counts tether's open file descriptors.
func (p *tetherProc) fds() int {
	p.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid()))
	if err != nil {
		p.t.Fatalf("fds: %v", err)
	}
	return len(ents)
}

// usage is tether's resource use at one moment. pooled is the idle member
// conns its pools hold (reuse and preconnect stocks): fds that stay by
// design, up to the pools' limits. A member conn in use is not pooled.
type usage struct{ fds, pooled, goroutines int }

func (u usage) String() string {
	return fmt.Sprintf("%d fds (%d of them pooled member conns), %d goroutines", u.fds, u.pooled, u.goroutines)
}

// unpooled is the fds that are not pooled member conns.
func (u usage) unpooled() int { return u.fds - u.pooled }

// usage reads tether's fds, pooled conns and goroutines (the goroutine
// count includes the admin request that reads it, as every reading does).
func (p *tetherProc) usage() usage {
	var body struct {
		Pools []struct {
			Members []memberView `json:"members"`
		} `json:"pools"`
	}
	p.get("/api/v1/pools", &body)
	pooled := 0
	for _, pl := range body.Pools {
		for _, m := range pl.Members {
			pooled += m.Idle
		}
	}
	return usage{fds: p.fds(), pooled: pooled, goroutines: int(p.metric("go_goroutines"))}
}

// settles waits up to within for tether's fds (less its pooled member
// conns) and goroutines to come back to base, at most slack more of each,
// and fails the test if they do not.
func (p *tetherProc) settles(base usage, slack int, within time.Duration) usage {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		u := p.usage()
		if u.unpooled() <= base.unpooled()+slack && u.goroutines <= base.goroutines+slack {
			return u
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("tether did not come back to its baseline (%s, slack %d) within %s: %s", base, slack, within, u)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
