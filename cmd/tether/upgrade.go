package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"go.uber.org/zap"

	"github.com/tetherproxy/tether/admin"
	"github.com/tetherproxy/tether/sockopt"
)

// Hot binary upgrade (SIGUSR2, POST /api/v1/upgrade, `tether ctl
// upgrade`) with cloudflare/tableflip, and systemd socket activation.
//
// The running process starts the binary at its own path (os.Executable:
// after the file was replaced, the new one) with the same arguments and
// passes it every listening socket, keyed by the configured listen
// address. The new process loads and validates its config, takes the
// sockets of the addresses it still has (binding only new ones), starts,
// writes the PID file and reports ready; the old one then stops accepting
// and drains (proxy.Server.ShutdownGently). A new process that fails (bad
// config, a port it cannot bind, no ready within upgradeTimeout) exits or
// is killed; the old one keeps serving and says why (the log; the API's
// answer with the new process's own report).
//
// A port-0 listen address ("127.0.0.1:0") is keyed by that string: the
// new process receives the socket and so keeps the port the old one got.
// Two virtual servers with the same port-0 string share one key: the
// second gets a new port at an upgrade.

// upgradeTimeout bounds the wait for the new process's ready; then it is
// killed and the upgrade failed.
const upgradeTimeout = time.Minute

// reportEnv names the file where a process started by an upgrade reports
// how its start went (startReport), for the process that started it.
const reportEnv = "TETHER_UPGRADE_REPORT"

// upgrader holds a process's listening sockets for its successor and runs
// upgrades. It is the proxy's proxy.Listeners and gives the admin API its
// listener and POST /api/v1/upgrade.
type upgrader struct {
	upg     *tableflip.Upgrader // nil: upgrades are off in this process (off says why)
	off     error
	log     *zap.Logger
	pidFile string // "" = none

	actMu     sync.Mutex
	activated []*activated // from systemd, not taken yet

	busy     sync.Mutex    // one upgrade at a time (TryLock)
	doneOnce sync.Once     // closes done
	done     chan struct{} // closed when an upgrade succeeded: this process drains

	// relMu orders Release against the start of an upgrade: while a new
	// process may hold the sockets (starting, or ready), one the proxy
	// releases is not shut down here but kept (deferred) until the
	// upgrade failed.
	relMu     sync.Mutex
	upgrading bool
	deferred  []int // dups of released listeners, shut down if the upgrade fails
}

// activated is a listening socket systemd passed (LISTEN_FDS).
type activated struct {
	name string // its LISTEN_FDNAMES entry ("" = none)
	ln   *net.TCPListener
}

// newUpgrader takes the sockets passed by systemd or by the process this
// one replaces. Only one tableflip.Upgrader may exist in a process: a
// second `run` in the same process (tests) runs with upgrades off.
func newUpgrader(pidFile string, logger *zap.Logger) *upgrader {
	u := &upgrader{log: logger, pidFile: pidFile, done: make(chan struct{})}
	u.activated = socketActivated(logger)
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: upgradeTimeout})
	if err != nil {
		u.off = err
		logger.Warn("hot upgrade is off in this process", zap.Error(err))
		return u
	}
	u.upg = upg
	if upg.HasParent() {
		logger.Info("upgrade: started by the process this one replaces; taking its listeners", zap.Int("parent_pid", os.Getppid()))
	}
	return u
}

// Listen is proxy.Listeners': a socket from systemd matched by name or
// address, else one received from the replaced process for addr, else
// bind's. Every listener is kept (a dup, in tableflip) for the next
// process.
func (u *upgrader) Listen(ctx context.Context, name, addr string, bind func(context.Context) (*net.TCPListener, error)) (*net.TCPListener, bool, error) {
	if ln := u.takeActivated(name, addr); ln != nil {
		u.log.Info("socket activation: listener from systemd", zap.String("for", name), zap.String("listen", addr), zap.Stringer("address", ln.Addr()))
		u.keep(addr, ln)
		return ln, true, nil
	}
	if u.upg != nil {
		got, err := u.upg.Listener("tcp", addr)
		if err != nil {
			return nil, false, fmt.Errorf("upgrade: the listener received for %s: %w", addr, err)
		}
		if got != nil {
			tl, ok := got.(*net.TCPListener)
			if ok && listening(tl) {
				return tl, true, nil
			}
			_ = got.Close()
			// The replaced process's reload removed it (Release shut it
			// down) while its copy stayed among the passed ones.
			u.log.Warn("upgrade: the socket received for this address no longer listens; binding anew", zap.String("listen", addr))
		}
	}
	ln, err := bind(ctx)
	if err != nil {
		return nil, false, err
	}
	u.keep(addr, ln)
	return ln, false, nil
}

// keep gives tableflip a dup of ln under addr, for the next process.
func (u *upgrader) keep(addr string, ln *net.TCPListener) {
	if u.upg == nil {
		return
	}
	if err := u.upg.AddListener("tcp", addr, ln); err != nil {
		u.log.Warn("upgrade: this listener will not be passed to a new process", zap.String("listen", addr), zap.Error(err))
	}
}

// listening reports whether ln's socket is in LISTEN.
func listening(ln *net.TCPListener) bool {
	_, _, err := sockopt.Backlog(ln)
	return err == nil
}

// Release is proxy.Listeners': ln is closed for good, but tableflip keeps
// a dup of every listener it was given (its API has no removal), so the
// socket would stay in LISTEN with nobody accepting: clients would wait
// in its backlog. shutdown(2) on a listening socket makes the kernel stop
// listening for every descriptor of it: new connections are refused, as
// after a close. While an upgrade may hand the socket to a new process, it
// is left alone (that process decides) and shut down only if the upgrade
// fails.
func (u *upgrader) Release(addr string, ln *net.TCPListener) {
	if u.upg == nil {
		return // no copy kept
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return
	}
	u.relMu.Lock()
	defer u.relMu.Unlock()
	_ = rc.Control(func(fd uintptr) {
		if !u.upgrading {
			err = syscall.Shutdown(int(fd), syscall.SHUT_RDWR)
			return
		}
		var dup int
		if dup, err = syscall.Dup(int(fd)); err == nil {
			syscall.CloseOnExec(dup)
			u.deferred = append(u.deferred, dup)
		}
	})
	if err != nil {
		u.log.Warn("upgrade: a removed listener could not be shut down; it may keep accepting into its backlog until the next upgrade", zap.String("listen", addr), zap.Error(err))
	}
}

// setUpgrading marks the start and the failed end of an upgrade; at the
// failed end the listeners released meanwhile are shut down.
func (u *upgrader) setUpgrading(on bool) {
	u.relMu.Lock()
	defer u.relMu.Unlock()
	u.upgrading = on
	if on {
		return
	}
	for _, fd := range u.deferred {
		_ = syscall.Shutdown(fd, syscall.SHUT_RDWR)
		_ = syscall.Close(fd)
	}
	u.deferred = nil
}

// adminListener gives the admin API its listener like Listen does (a
// socket from systemd named "admin" or on its address, one received, or a
// new one).
func (u *upgrader) adminListener(ctx context.Context, addr string) (net.Listener, error) {
	ln, _, err := u.Listen(ctx, "admin", addr, func(ctx context.Context) (*net.TCPListener, error) {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return ln.(*net.TCPListener), nil
	})
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// ready is called once every listener serves: the systemd sockets nothing
// took are closed, the PID file written, the start report written and the
// replaced process (if any) told, which then drains.
func (u *upgrader) ready(rep startReport) error {
	u.actMu.Lock()
	for _, a := range u.activated {
		u.log.Warn("socket activation: no virtual server has this socket; closed", zap.String("name", a.name), zap.Stringer("address", a.ln.Addr()))
		_ = a.ln.Close()
	}
	u.activated = nil
	u.actMu.Unlock()
	if u.pidFile != "" {
		if err := writePIDFile(u.pidFile); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
	}
	rep.ready()
	if u.upg == nil {
		return nil
	}
	if err := u.upg.Ready(); err != nil {
		u.log.Warn("upgrade: could not tell the replaced process that this one is ready", zap.Error(err))
	}
	return nil
}

// waitForParent logs when the process this one replaced has exited (it
// drains first), until ctx ends.
func (u *upgrader) waitForParent(ctx context.Context) {
	if u.upg == nil || !u.upg.HasParent() {
		return
	}
	if err := u.upg.WaitForParent(ctx); err == nil {
		u.log.Info("upgrade: the replaced process has exited", zap.Int("pid", os.Getpid()))
	} else if ctx.Err() == nil {
		u.log.Warn("upgrade: the replaced process", zap.Error(err))
	}
}

// upgrade starts the new process and waits for its ready or its failure
// (admin.UpgradeFunc). One at a time.
func (u *upgrader) upgrade(ctx context.Context) (int, []string, error) {
	if u.upg == nil {
		return 0, nil, fmt.Errorf("%w: hot upgrade is off in this process: %v", admin.ErrUpgradeRefused, u.off)
	}
	if !u.busy.TryLock() {
		return 0, nil, fmt.Errorf("%w: an upgrade is under way", admin.ErrUpgradeRefused)
	}
	defer u.busy.Unlock()
	select {
	case <-u.done:
		return 0, nil, fmt.Errorf("%w: this process was replaced already and is draining", admin.ErrUpgradeRefused)
	default:
	}
	exe, err := os.Executable() // the path, also when the file was replaced
	if err != nil {
		return 0, nil, fmt.Errorf("upgrade: cannot find this program's path: %w", err)
	}
	f, err := os.CreateTemp("", "tether-upgrade-*")
	if err != nil {
		return 0, nil, fmt.Errorf("upgrade: report file: %w", err)
	}
	report := f.Name()
	_ = f.Close()
	defer os.Remove(report)
	// tableflip starts os.Args[0] with os.Args[1:] and os.Environ().
	os.Args[0] = exe
	_ = os.Setenv(reportEnv, report)
	defer os.Unsetenv(reportEnv)

	start := time.Now()
	u.log.Info("upgrade: starting the new process", zap.String("binary", exe), zap.Strings("args", os.Args[1:]))
	u.setUpgrading(true)
	err = u.upg.Upgrade()
	pid, problems := readReport(report)
	if err != nil {
		u.setUpgrading(false)
		msg := err.Error()
		if !strings.Contains(msg, "child") { // refused before starting one
			if msg == "parent hasn't exited" {
				msg = "the process this one replaced is still draining; try again once it exited"
			}
			u.log.Warn("upgrade refused", zap.String("reason", msg))
			return 0, nil, fmt.Errorf("%w: %s", admin.ErrUpgradeRefused, msg)
		}
		err = fmt.Errorf("upgrade failed (%s): this process keeps serving", msg)
		u.log.Error("upgrade failed; this process keeps serving", zap.String("new_process", msg), zap.Strings("problems", problems),
			zap.Duration("took", time.Since(start)))
		return 0, problems, err
	}
	u.doneOnce.Do(func() { close(u.done) })
	u.log.Info("upgrade: the new process is ready; this one stops accepting and drains", zap.Int("new_pid", pid), zap.Duration("took", time.Since(start)))
	return pid, nil, nil
}

// upgraded is closed once an upgrade succeeded.
func (u *upgrader) upgraded() <-chan struct{} { return u.done }

// stop ends what the upgrader runs: an upgrade under way is cut (its new
// process killed), the dups of the listeners are closed (so that closing
// the proxy's own stops listening: SIGTERM refuses new connections, as
// without upgrades), and unmatched systemd sockets closed.
func (u *upgrader) stop() {
	if u.upg != nil {
		u.upg.Stop()
		<-u.upg.Exit()
	}
	u.actMu.Lock()
	for _, a := range u.activated {
		_ = a.ln.Close()
	}
	u.activated = nil
	u.actMu.Unlock()
}

// socketActivated takes the listening sockets systemd passed (LISTEN_FDS
// from fd 3 on, for this PID: LISTEN_PID; names in LISTEN_FDNAMES) and
// removes the variables, so that a process started by an upgrade does not
// see them.
func socketActivated(logger *zap.Logger) []*activated {
	pid, errPID := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, errN := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		_ = os.Unsetenv(v)
	}
	if errPID != nil || errN != nil || pid != os.Getpid() || n <= 0 {
		return nil
	}
	var out []*activated
	for i := range n {
		fd := 3 + i
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		ln, err := net.FileListener(f) // a dup
		_ = f.Close()
		name := ""
		if i < len(names) {
			name = names[i]
		}
		tl, ok := ln.(*net.TCPListener)
		if err != nil || !ok {
			if ln != nil {
				_ = ln.Close()
			}
			logger.Warn("socket activation: not a listening TCP socket; ignored", zap.Int("fd", fd), zap.String("name", name), zap.Error(err))
			continue
		}
		out = append(out, &activated{name: name, ln: tl})
	}
	logger.Info("socket activation: listeners received from systemd", zap.Int("count", len(out)))
	return out
}

// takeActivated returns the systemd socket named name, else the one whose
// address is addr's, and forgets it; nil if none.
func (u *upgrader) takeActivated(name, addr string) *net.TCPListener {
	u.actMu.Lock()
	defer u.actMu.Unlock()
	pick := -1
	for i, a := range u.activated {
		if a.name != "" && a.name == name {
			pick = i
			break
		}
	}
	for i, a := range u.activated {
		if pick < 0 && sameAddress(addr, a.ln.Addr()) {
			pick = i
		}
	}
	if pick < 0 {
		return nil
	}
	ln := u.activated[pick].ln
	u.activated = append(u.activated[:pick], u.activated[pick+1:]...)
	return ln
}

// sameAddress reports whether the bound address got is the configured
// listen address addr: same port (not 0), and the same IP, or both a
// wildcard (0.0.0.0 and :: count as one).
func sameAddress(addr string, got net.Addr) bool {
	ta, ok := got.(*net.TCPAddr)
	if !ok {
		return false
	}
	ra, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || ra.Port == 0 || ra.Port != ta.Port {
		return false
	}
	if ra.IP == nil || ra.IP.IsUnspecified() {
		return ta.IP == nil || ta.IP.IsUnspecified()
	}
	return ra.IP.Equal(ta.IP)
}

// writePIDFile writes this process's PID to path, atomically (a temporary
// file renamed over it): systemd (PIDFile=) reads it when the main process
// exits after an upgrade and follows the new one.
func writePIDFile(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename: nothing there
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// removePIDFile removes path if it still names this process (after an
// upgrade it names the new one).
func removePIDFile(path string) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(path)
	}
}

// startReport is the file (reportEnv) where a process started by an
// upgrade writes how its start went: "ready PID", or "failed" and why,
// one problem a line. "" = not started by an upgrade.
type startReport string

// takeStartReport reads and removes reportEnv, so that this process's own
// upgrades set their own.
func takeStartReport() startReport {
	p := os.Getenv(reportEnv)
	_ = os.Unsetenv(reportEnv)
	return startReport(p)
}

func (r startReport) failed(why string) {
	if r != "" {
		_ = os.WriteFile(string(r), []byte("failed\n"+why+"\n"), 0o600)
	}
}

func (r startReport) ready() {
	if r != "" {
		_ = os.WriteFile(string(r), []byte("ready "+strconv.Itoa(os.Getpid())+"\n"), 0o600)
	}
}

// readReport reads a startReport: the new process's PID when it was
// ready, else its problems (none when it wrote nothing: it crashed or
// was killed).
func readReport(path string) (pid int, problems []string) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, nil
	}
	if p, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
		pid, _ = strconv.Atoi(p)
		return pid, nil
	}
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			problems = append(problems, line)
		}
	}
	return 0, problems
}
