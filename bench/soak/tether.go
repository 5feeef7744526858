package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// addrs are the run's loopback addresses: 127.77.R.0/24 for tether and the
// members, 127.78.R.0/24 for the clients' sources.
type addrs struct {
	r        int
	web      string // tether's http virtual server
	echo     string // tether's tcp virtual server
	admin    string // tether's admin API
	members  [2]memberSpec
	clientIP func(i int) net.IP // the i-th client source address
}

func newAddrs(r int) addrs {
	host := func(last int) string { return fmt.Sprintf("127.77.%d.%d", r, last) }
	a := addrs{
		r:     r,
		web:   host(1) + ":8080",
		echo:  host(1) + ":8007",
		admin: host(1) + ":9901",
		clientIP: func(i int) net.IP {
			return net.IPv4(127, 78, byte(r), byte(1+i%250))
		},
	}
	for i := range a.members {
		a.members[i] = memberSpec{Name: fmt.Sprintf("m%d", i+1), HTTP: host(11+i) + ":8080", Echo: host(11+i) + ":8007"}
	}
	return a
}

// pickAddrs picks an R whose addresses are free now.
func pickAddrs() (addrs, error) {
	for range 50 {
		a := newAddrs(1 + rand.IntN(254))
		free := true
		for _, hp := range []string{a.web, a.echo, a.admin, a.members[0].HTTP, a.members[0].Echo, a.members[1].HTTP, a.members[1].Echo} {
			ln, err := net.Listen("tcp", hp)
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return a, nil
		}
	}
	return addrs{}, fmt.Errorf("no free 127.77.R.0/24 in 50 tries")
}

// tetherConfig is the soaked config: tether's defaults but for the fast
// health checks (a killed member is down within about a second) and no
// access log.
func tetherConfig(a addrs) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# rendered by bench/soak
[global]
shutdown_timeout = "5s"

[log]
level = "warn"
format = "json"
access = false

[admin]
listen = %q
`, a.admin)
	for _, p := range []struct{ name, mode, listen string }{{"web", "http", a.web}, {"echo", "tcp", a.echo}} {
		fmt.Fprintf(&b, "\n[pool.%s]\nmethod = \"round-robin\"\n", p.name)
		fmt.Fprintf(&b, "[pool.%s.health]\ntype = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\nrise = 1\nfall = 2\n", p.name)
		for _, m := range a.members {
			addr := m.HTTP
			if p.mode == "tcp" {
				addr = m.Echo
			}
			fmt.Fprintf(&b, "[[pool.%s.members]]\naddress = %q\n", p.name, addr)
		}
	}
	for _, p := range []struct{ name, mode, listen string }{{"web", "http", a.web}, {"echo", "tcp", a.echo}} {
		fmt.Fprintf(&b, "\n[[virtual_server]]\nname = %q\nlisten = %q\nmode = %q\npool = %q\n", p.name, p.listen, p.mode, p.name)
	}
	return b.String()
}

// buildTether builds ./cmd/tether of the module this runs in into dir.
func buildTether(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(gomod))
	if err != nil || !strings.HasSuffix(mod, "go.mod") {
		return "", fmt.Errorf("run from inside the tether module (go env GOMOD: %q, %v)", mod, err)
	}
	out := filepath.Join(dir, "tether")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/tether")
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tether: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// tetherProc is the soaked tether.
type tetherProc struct {
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
	err   error
	admin string
	hc    *http.Client
}

// startTether runs bin with cfg and waits until its admin API says ready.
func startTether(ctx context.Context, bin, dir string, a addrs) (*tetherProc, error) {
	cfg := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(cfg, []byte(tetherConfig(a)), 0o644); err != nil {
		return nil, err
	}
	p := &tetherProc{log: filepath.Join(dir, "tether.log"), done: make(chan struct{}), admin: a.admin,
		hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p.cmd = exec.Command(bin, "run", "-c", cfg)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.hc.Get("http://" + a.admin + "/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if !p.alive() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("tether not ready (%v): %s", err, p.tail(10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *tetherProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *tetherProc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 10 s, then kills; it returns the
// exit status.
func (p *tetherProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("tether still running 10s after SIGTERM: killed")
	}
	return p.err
}

// tail is the last n lines of tether's log.
func (p *tetherProc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// probe is tether's resource use at one moment.
type probe struct {
	rssKiB      int64
	fds         int
	goroutines  int
	memberConns int // member conns its pools hold, in use or idle
	cpuTicks    int64
}

// probe reads tether's RSS, fds and CPU from /proc, its goroutines from
// /metrics and its member conns from /api/v1/pools.
func (p *tetherProc) probe() (probe, error) {
	var pr probe
	var err error
	if pr.rssKiB, err = rssKiB(p.pid()); err != nil {
		return pr, err
	}
	if pr.cpuTicks, err = cpuTicks(p.pid()); err != nil {
		return pr, err
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid()))
	if err != nil {
		return pr, err
	}
	pr.fds = len(ents)
	g, err := p.metric("go_goroutines")
	if err != nil {
		return pr, err
	}
	pr.goroutines = int(g)
	pr.memberConns, err = p.memberConns()
	return pr, err
}

// rssKiB reads VmRSS from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", line)
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture Go runs on).
const clockTicks = 100

// cpuTicks reads utime+stime from /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces and parentheses: fields start after the
	// last ')'; utime and stime are fields 14 and 15 (11 and 12 after it).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	return u + s, nil
}

// metric returns the value of the /metrics sample named name (no labels).
func (p *tetherProc) metric(name string) (float64, error) {
	resp, err := p.hc.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics (%v)", name, sc.Err())
}

// membersUp counts the members tether's health checks see up, over every
// pool.
func (p *tetherProc) membersUp() (int, error) {
	body, err := p.pools()
	n := 0
	for _, pl := range body.Pools {
		for _, m := range pl.Members {
			if m.Health == "up" {
				n++
			}
		}
	}
	return n, err
}

// waitMembersUp waits up to within for tether's health checks to see the
// 4 members (the 2 processes, each in pool web and pool echo) up.
func (p *tetherProc) waitMembersUp(ctx context.Context, within time.Duration) error {
	if !waitUntil(ctx, within, func() bool { n, _ := p.membersUp(); return n == 4 }) {
		n, err := p.membersUp()
		return fmt.Errorf("tether's health checks see %d of 4 members up after %s (%v): %s", n, within, err, p.tail(5))
	}
	return nil
}

// poolsBody is what the soak reads of /api/v1/pools.
type poolsBody struct {
	Pools []struct {
		Members []struct {
			Health string `json:"health"`
			Active int    `json:"active"`
		} `json:"members"`
	} `json:"pools"`
}

func (p *tetherProc) pools() (poolsBody, error) {
	var body poolsBody
	resp, err := p.hc.Get("http://" + p.admin + "/api/v1/pools")
	if err != nil {
		return body, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return body, fmt.Errorf("/api/v1/pools: %w", err)
	}
	return body, nil
}

// memberConns sums the member conns (active: in use and idle) of every
// pool.
func (p *tetherProc) memberConns() (int, error) {
	body, err := p.pools()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pl := range body.Pools {
		for _, m := range pl.Members {
			n += m.Active
		}
	}
	return n, nil
}
