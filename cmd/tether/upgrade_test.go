package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// upgradeLab runs the real binary with a PID file, through hot upgrades.
// The test process is a child subreaper: a process started by an upgrade
// whose parent exited becomes the test's child, so the test reaps it and
// sees its exit status.
type upgradeLab struct {
	t       *testing.T
	bin     string
	cfgPath string
	pidPath string
	logPath string
	admin   string // http://host:port
	first   *exec.Cmd
	firstCh chan error // the first process's Wait
}

// newUpgradeLab makes the lab; start runs the first process.
func newUpgradeLab(t *testing.T, cfgText, adminAddr string) *upgradeLab {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
	dir := t.TempDir()
	l := &upgradeLab{t: t, bin: tetherBinary(t), cfgPath: filepath.Join(dir, "tether.toml"),
		pidPath: filepath.Join(dir, "tether.pid"), logPath: filepath.Join(dir, "tether.log"), admin: "http://" + adminAddr}
	l.writeConfig(cfgText)
	t.Cleanup(l.cleanup)
	return l
}

func (l *upgradeLab) writeConfig(text string) {
	l.t.Helper()
	if err := os.WriteFile(l.cfgPath, []byte(text), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// start runs cmd (the binary, or a wrapper that execs it) as the first
// process, its stderr appended to logPath (a file, not a pipe: the
// processes started by upgrades inherit it, and a pipe would hold the
// first one's Wait until the last of them exits), and waits for /ready.
func (l *upgradeLab) start(cmd *exec.Cmd) int {
	l.t.Helper()
	logf, err := os.OpenFile(l.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.first, l.firstCh = cmd, make(chan error, 1)
	go func() { l.firstCh <- cmd.Wait() }()
	pid := l.waitPID(0)
	l.waitReady()
	return pid
}

func (l *upgradeLab) runArgs() []string {
	return []string{"run", "-c", l.cfgPath, "--pid-file", l.pidPath}
}

// pid reads the PID file (0 if none).
func (l *upgradeLab) pid() int {
	b, err := os.ReadFile(l.pidPath)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitPID waits for the PID file to name a process other than old.
func (l *upgradeLab) waitPID(old int) int {
	l.t.Helper()
	var pid int
	socktest.WaitFor(l.t, 20*time.Second, "a new PID in the PID file", func() bool {
		pid = l.pid()
		return pid != 0 && pid != old
	})
	return pid
}

func (l *upgradeLab) waitReady() {
	l.t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	socktest.WaitFor(l.t, 10*time.Second, "tether ready", func() bool {
		resp, err := hc.Get(l.admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// waitExit waits (within 15 s) for pid to exit and returns its exit
// status: the first process through its Wait, the others by wait4 (the
// test is their subreaper).
func (l *upgradeLab) waitExit(pid int) int {
	l.t.Helper()
	if l.first != nil && pid == l.first.Process.Pid {
		select {
		case err := <-l.firstCh:
			l.firstCh <- err // for cleanup
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			if err != nil {
				l.t.Fatalf("pid %d: %v", pid, err)
			}
			return 0
		case <-time.After(15 * time.Second):
			l.t.Fatalf("pid %d did not exit within 15 s\n%s", pid, l.log())
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		switch {
		case err != nil:
			l.t.Fatalf("wait4(%d): %v (not a child of the test: is the subreaper set?)", pid, err)
		case got == pid:
			return ws.ExitStatus()
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.t.Fatalf("pid %d did not exit within 15 s\n%s", pid, l.log())
	return -1
}

// serving lists the live processes of this lab: the binary run with this
// lab's config file (zombies have no command line).
func (l *upgradeLab) serving() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 && args[0] == l.bin && args[1] == "run" && slices.Contains(args, l.cfgPath) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (l *upgradeLab) log() string {
	b, _ := os.ReadFile(l.logPath)
	return string(b)
}

// logLine reports whether a log line has every one of parts.
func (l *upgradeLab) logLine(parts ...string) bool {
	for _, line := range strings.Split(l.log(), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

// cleanup kills what is left (a failed test) and reaps it; the subreaper
// is unset.
func (l *upgradeLab) cleanup() {
	for _, pid := range l.serving() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	}
	if l.first != nil {
		_ = l.first.Process.Kill()
		<-l.firstCh
	}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
}

// upgradeCtl runs `tether ctl upgrade` against the lab's admin API.
func (l *upgradeLab) upgradeCtl() (code int, stdout, stderr string) {
	return runCLI("ctl", "--admin", l.admin, "upgrade")
}

var ctlUpgradedRE = regexp.MustCompile(`^upgraded at \S+: pid (\d+) serves; pid (\d+) stopped accepting and drains\n$`)

// upgradeLoad is the client load that runs through the upgrades: strict
// clients (no retries), each refused connect and each failed request
// counted.
type upgradeLoad struct {
	requests, refused, failed atomic.Int64
	stop                      chan struct{}
	wg                        sync.WaitGroup
	mu                        sync.Mutex
	errs                      []string // the first failures
}

func (ld *upgradeLoad) fail(refused bool, format string, a ...any) {
	if refused {
		ld.refused.Add(1)
	} else {
		ld.failed.Add(1)
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.errs) < 10 {
		ld.errs = append(ld.errs, fmt.Sprintf(format, a...))
	}
}

// maxRequestsPerClient bounds each client's load.
const maxRequestsPerClient = 20000

// run starts keepalive clients (up to 50 requests a conn, a new conn when
// tether says Connection: close) and short-connection clients (one
// request a conn) against addr until stop.
func (ld *upgradeLoad) run(addr string, keepalive, short int) {
	ld.stop = make(chan struct{})
	for i := range keepalive + short {
		perConn := 50
		if i >= keepalive {
			perConn = 1
		}
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			ld.client(addr, perConn)
		}()
	}
}

func (ld *upgradeLoad) stopped() bool {
	select {
	case <-ld.stop:
		return true
	default:
		return false
	}
}

func (ld *upgradeLoad) client(addr string, perConn int) {
	for n := 0; n < maxRequestsPerClient && !ld.stopped(); {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			ld.fail(errors.Is(err, syscall.ECONNREFUSED), "connect: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i := 0; i < perConn && !ld.stopped(); i++ {
			n++
			hdr := ""
			if i == perConn-1 {
				hdr = "Connection: close\r\n"
			}
			if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n", i, hdr); err != nil {
				ld.fail(false, "request %d on a conn: write: %v", i+1, err)
				break
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				ld.fail(false, "request %d on a conn: %v", i+1, err)
				break
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
				ld.fail(false, "request %d on a conn: status %d, body %q, %v", i+1, resp.StatusCode, body, err)
				break
			}
			ld.requests.Add(1)
			if resp.Close {
				break
			}
			time.Sleep(time.Millisecond)
		}
		_ = c.Close()
	}
}

func (ld *upgradeLoad) end() {
	close(ld.stop)
	ld.wg.Wait()
}

// relay is a tcp-mode connection through tether to an echo member, opened
// before an upgrade and finished after it.
type relay struct {
	c    *net.TCPConn
	sent []byte
}

func openRelay(t *testing.T, addr string) *relay {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("relay: connect: %v", err)
	}
	r := &relay{c: c.(*net.TCPConn)}
	_ = r.c.SetDeadline(time.Now().Add(20 * time.Second))
	r.exchange(t, 64<<10)
	return r
}

// exchange sends n random bytes and reads them back.
func (r *relay) exchange(t *testing.T, n int) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	r.sent = append(r.sent, b...)
	go func() { _, _ = r.c.Write(b) }()
	got := make([]byte, n)
	if _, err := io.ReadFull(r.c, got); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("relay: echo of %d bytes: %v (equal %v)", n, err, bytes.Equal(got, b))
	}
}

// finish sends more after the upgrade, half-closes, and wants the echo
// whole, then EOF: the relay finished byte-exact in the old process.
func (r *relay) finish(t *testing.T) {
	t.Helper()
	r.exchange(t, 64<<10)
	_ = r.c.CloseWrite()
	if rest, err := io.ReadAll(r.c); err != nil || len(rest) != 0 {
		t.Fatalf("relay: after the half-close: %d more bytes, %v; want EOF", len(rest), err)
	}
	_ = r.c.Close()
}

func upgradeConfig(adminAddr, web, tcp, member, echo string) string {
	return fmt.Sprintf(`
[log]
access = false
[admin]
listen = %q
[global]
shutdown_timeout = "10s"
[pool.web]
members = [{ address = %q }]
[pool.web.health]
type = "none"
[pool.echo]
members = [{ address = %q }]
[pool.echo.health]
type = "none"
[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = "web"
[[virtual_server]]
name = "relay"
listen = %q
mode = "tcp"
pool = "echo"
`, adminAddr, member, echo, web, tcp)
}

func okMember(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// Ten hot upgrades in a row of the real binary (SIGUSR2 and `tether ctl
// upgrade` in turn) under keepalive and short-connection load, with tcp
// relays opened before each and finished after it: no connect refused, no
// request failed, every relay byte-exact, and after each upgrade exactly
// one process serving: the new one (the PID file's), the old one gone
// with exit status 0. The sixth is tried with the config file made bad
// first: it fails visibly (ctl exits 1 with the config's problem; the log
// says the new process exited with status 1) and the old process keeps
// serving.
func TestHotUpgradeTenTimesUnderLoad(t *testing.T) {
	echo := socktest.Start(t, socktest.Echo)
	member := okMember(t)
	adminAddr, web, tcp := socktest.FreeAddr(t), socktest.FreeAddr(t), socktest.FreeAddr(t)
	good := upgradeConfig(adminAddr, web, tcp, member, echo.Addr())
	l := newUpgradeLab(t, good, adminAddr)
	pid := l.start(exec.Command(l.bin, l.runArgs()...))

	ld := &upgradeLoad{}
	ld.run(web, 6, 3)
	defer func() {
		if ld.stop != nil && !ld.stopped() {
			ld.end()
		}
	}()
	const rounds, bad = 10, 5
	var readyTimes, exitTimes []time.Duration
	for round := range rounds {
		// Each upgrade under established load.
		before := ld.requests.Load()
		socktest.WaitFor(t, 10*time.Second, "load before the upgrade", func() bool { return ld.requests.Load() > before+300 })
		before = ld.requests.Load()
		relays := []*relay{openRelay(t, tcp), openRelay(t, tcp)}
		viaCtl := round%2 == 1 || round == bad
		if round == bad {
			l.writeConfig(good + "bogus = 1\n")
		}
		start := time.Now()
		var newPID int
		if viaCtl {
			code, out, errOut := l.upgradeCtl()
			if round == bad {
				if code != exitError || !strings.Contains(errOut, "upgrade failed") || !strings.Contains(errOut, "exit status 1") ||
					!strings.Contains(errOut, `unknown key "virtual_server.bogus"`) || !strings.Contains(errOut, "keeps serving") {
					t.Fatalf("upgrade with a bad config: exit %d, stdout %q, stderr %q; want 1, saying why", code, out, errOut)
				}
			} else {
				m := ctlUpgradedRE.FindStringSubmatch(out)
				if code != exitOK || m == nil || m[2] != strconv.Itoa(pid) {
					t.Fatalf("round %d: ctl upgrade: exit %d, stdout %q, stderr %q\n%s", round, code, out, errOut, l.log())
				}
				newPID, _ = strconv.Atoi(m[1])
				if got := l.pid(); got != newPID {
					t.Fatalf("round %d: ctl says pid %d serves, the PID file %d", round, newPID, got)
				}
			}
		} else {
			if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			newPID = l.waitPID(pid)
		}
		readyTimes = append(readyTimes, time.Since(start))
		for _, r := range relays {
			r.finish(t)
		}
		if round == bad {
			l.writeConfig(good)
			if l.pid() != pid || !slices.Equal(l.serving(), []int{pid}) {
				t.Fatalf("after the failed upgrade: PID file %d, serving %v; want the old %d alone", l.pid(), l.serving(), pid)
			}
			if !l.logLine("upgrade failed; this process keeps serving", "exit status 1") {
				t.Errorf("the log does not show the failed upgrade with its exit status:\n%s", l.log())
			}
		} else {
			if status := l.waitExit(pid); status != 0 {
				t.Fatalf("round %d: the old process %d exited with status %d\n%s", round, pid, status, l.log())
			}
			exitTimes = append(exitTimes, time.Since(start))
			if got := l.serving(); !slices.Equal(got, []int{newPID}) {
				t.Fatalf("round %d: serving %v, want the new process %d alone", round, got, newPID)
			}
			pid = newPID
			// The next upgrade needs the new process to have seen its
			// parent exit (one upgrade at a time).
			socktest.WaitFor(t, 5*time.Second, "the new process saw the old one exit", func() bool {
				return l.logLine("the replaced process has exited", fmt.Sprintf(`"pid":%d}`, pid))
			})
		}
		socktest.WaitFor(t, 5*time.Second, "requests after the upgrade", func() bool { return ld.requests.Load() > before+50 })
	}
	ld.end()
	if code, _, errOut := runCLI("ctl", "--admin", l.admin, "status"); code != exitOK {
		t.Errorf("ctl status on the last process: exit %d %s", code, errOut)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status := l.waitExit(pid); status != 0 {
		t.Errorf("the last process exited with status %d", status)
	}
	if _, err := os.Stat(l.pidPath); !os.IsNotExist(err) {
		t.Errorf("PID file after SIGTERM: %v, want removed", err)
	}
	t.Logf("%d upgrades (1 with a bad config, refused): %d requests, %d refused connects, %d failed requests; ready after %v, old process gone after %v",
		rounds, ld.requests.Load(), ld.refused.Load(), ld.failed.Load(), readyTimes, exitTimes)
	if ld.refused.Load() != 0 || ld.failed.Load() != 0 {
		t.Fatalf("%d refused connects, %d failed requests; want 0 and 0; first: %q", ld.refused.Load(), ld.failed.Load(), ld.errs)
	}
}

// A reload that removes a virtual server leaves its port refusing, though
// tableflip keeps a copy of every listener for the next process: the
// socket is shut down (without that, connects would succeed into a
// backlog nobody accepts from). The port can be taken again by a reload,
// and after an upgrade (which passes the dead copy along) the new process
// neither serves it nor fails; re-added there, it serves.
func TestUpgradeReloadRemovedVirtualServerRefuses(t *testing.T) {
	echo := socktest.Start(t, socktest.Echo)
	member := okMember(t)
	adminAddr, web, tcp := socktest.FreeAddr(t), socktest.FreeAddr(t), socktest.FreeAddr(t)
	both := upgradeConfig(adminAddr, web, tcp, member, echo.Addr())
	cut := both[:strings.Index(both, "[[virtual_server]]\nname = \"relay\"")]
	l := newUpgradeLab(t, both, adminAddr)
	pid := l.start(exec.Command(l.bin, l.runArgs()...))

	reload := func(text string) {
		t.Helper()
		l.writeConfig(text)
		if code, out, errOut := runCLI("ctl", "--admin", l.admin, "reload"); code != exitOK {
			t.Fatalf("reload: exit %d %q %q", code, out, errOut)
		}
	}
	refuses := func(when string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", tcp, 2*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("%s: a connect to the removed virtual server's port succeeded; want refused", when)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: connect: %v, want refused", when, err)
		}
	}
	serves := func() {
		t.Helper()
		openRelay(t, tcp).finish(t)
	}
	serves()
	reload(cut)
	refuses("after the reload that removed it")
	reload(both)
	serves() // re-added by a reload
	reload(cut)
	refuses("removed again")

	code, out, errOut := l.upgradeCtl()
	m := ctlUpgradedRE.FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("ctl upgrade: exit %d %q %q\n%s", code, out, errOut, l.log())
	}
	if status := l.waitExit(pid); status != 0 {
		t.Fatalf("old process: exit status %d", status)
	}
	pid, _ = strconv.Atoi(m[1])
	refuses("after the upgrade")
	socktest.WaitFor(t, 5*time.Second, "the new process saw the old one exit", func() bool {
		return l.logLine("the replaced process has exited", fmt.Sprintf(`"pid":%d}`, pid))
	})
	reload(both)
	serves() // re-added in the new process
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status := l.waitExit(pid); status != 0 {
		t.Errorf("the last process exited with status %d", status)
	}
}

// Socket activation: started as systemd does (listening sockets from fd 3
// on, LISTEN_FDS, LISTEN_PID of the process, LISTEN_FDNAMES), tether
// serves on the sockets it received, matched to the virtual server and
// the admin API by address (the names here are the socket unit's, as
// systemd's default), and binds nothing: the test keeps its own copies
// listening, so a bind of the same address would fail. An upgrade passes
// them on.
func TestSocketActivation(t *testing.T) {
	member := okMember(t)
	echo := socktest.Start(t, socktest.Echo)
	var files []*os.File
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		addrs = append(addrs, ln.Addr().String())
	}
	adminAddr, web := addrs[0], addrs[1]
	l := newUpgradeLab(t, upgradeConfig(adminAddr, web, socktest.FreeAddr(t), member, echo.Addr()), adminAddr)
	// LISTEN_PID must be the PID of the process: the shell's, which exec
	// keeps.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, l.bin}, l.runArgs()...)...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=2", "LISTEN_FDNAMES=tether.socket:tether.socket")
	cmd.ExtraFiles = files
	pid := l.start(cmd)
	for _, f := range files {
		_ = f.Close()
	}
	get := func(when string) {
		t.Helper()
		// No idle conn kept: the old process would wait for its next
		// request (up to keepalive_timeout) before it exits.
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := hc.Get("http://" + web + "/")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("%s: %d %q", when, resp.StatusCode, body)
		}
	}
	get("socket-activated")
	if n := strings.Count(l.log(), "socket activation: listener from systemd"); n != 2 {
		t.Errorf("%d listeners taken from systemd, want 2 (web and admin)\n%s", n, l.log())
	}
	code, out, errOut := l.upgradeCtl()
	m := ctlUpgradedRE.FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("ctl upgrade: exit %d %q %q\n%s", code, out, errOut, l.log())
	}
	if status := l.waitExit(pid); status != 0 {
		t.Fatalf("old process: exit status %d", status)
	}
	pid, _ = strconv.Atoi(m[1])
	get("after an upgrade")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status := l.waitExit(pid); status != 0 {
		t.Errorf("the last process exited with status %d", status)
	}
}

// sameAddress matches a configured listen address with a bound one.
func TestSameAddress(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	cases := []struct {
		listen string
		got    net.Addr
		want   bool
	}{
		{"127.0.0.1:8080", tcp("127.0.0.1:8080"), true},
		{"127.0.0.1:8080", tcp("127.0.0.1:8081"), false},
		{"127.0.0.1:8080", tcp("127.0.0.2:8080"), false},
		{":8080", tcp("[::]:8080"), true},
		{"0.0.0.0:8080", tcp("[::]:8080"), true},
		{"0.0.0.0:8080", tcp("127.0.0.1:8080"), false},
		{"127.0.0.1:0", tcp("127.0.0.1:0"), false},
		{"[::1]:80", tcp("[::1]:80"), true},
	}
	for _, c := range cases {
		if got := sameAddress(c.listen, c.got); got != c.want {
			t.Errorf("sameAddress(%q, %v) = %v, want %v", c.listen, c.got, got, c.want)
		}
	}
}

// tether ctl upgrade prints the new and the old PID, or exits 1 with why
// and the new process's problems.
func TestCtlUpgradeSaysHowItWent(t *testing.T) {
	ok := startFakeAPI(t, "POST", "/api/v1/upgrade", 200, `{"ok":true,"at":"2025-01-02T03:04:05Z","old_pid":10,"new_pid":11}`)
	code, out, errOut := runCLI("ctl", "--admin", ok.URL, "upgrade")
	if want := "upgraded at 2025-01-02T03:04:05Z: pid 11 serves; pid 10 stopped accepting and drains\n"; code != exitOK || out != want {
		t.Errorf("upgrade: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if r := ok.lastRequest(t); r.Header.Get("X-Tether") != "1" {
		t.Errorf("upgrade request headers: %v", r.Header)
	}
	bad := startFakeAPI(t, "POST", "/api/v1/upgrade", 500,
		`{"error":"upgrade failed (child pid=11 exited: exit status 1): this process keeps serving","problems":["invalid configuration:","t.toml:3: unknown key \"x\""]}`)
	code, out, errOut = runCLI("ctl", "--admin", bad.URL, "upgrade")
	for _, w := range []string{"upgrade failed (child pid=11 exited: exit status 1): this process keeps serving\n", "  invalid configuration:\n", "  t.toml:3: unknown key \"x\"\n"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("failed upgrade: stderr lacks %q:\n%s", w, errOut)
		}
	}
	if code != exitError || out != "" {
		t.Errorf("failed upgrade: exit %d, stdout %q", code, out)
	}
}
