// Package socktest holds what the tests of every tether package share: a
// polling wait (WaitFor), an in-process backend on a real 127.0.0.1 socket
// that runs a handler per accepted connection and keeps count (Backend), and
// a few small handlers and addresses. It is for tests only; nothing in a
// tether binary imports it.
//
// It imports no other tether package, so any package's tests, sockopt's
// own included, may use it.
package socktest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, or fails the test with what after
// within. The poll starts at 1 ms and backs off to 20 ms, so a condition
// that holds soon is seen soon without spinning on one that takes a while.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Backend is an in-process TCP server: it accepts on a 127.x address and
// runs its handler for each connection in a goroutine of its own. It counts
// the connections it accepted, those still open (their handler has not
// returned) and the most open at once; it remembers the open ones so a test
// can close them all (a member dropping its idle connections). Close, run
// at the test's cleanup, stops it and waits for every handler.
type Backend struct {
	ln      *net.TCPListener
	handler func(*net.TCPConn)
	wg      sync.WaitGroup

	accepted atomic.Int64
	open     atomic.Int64
	peak     atomic.Int64

	mu    sync.Mutex
	conns map[*net.TCPConn]struct{}
	done  bool
}

// Start runs a Backend on 127.0.0.1 (a free port) with handler. The handler
// owns its conn; the Backend closes it after the handler returns, and at
// Close even while the handler runs.
func Start(t testing.TB, handler func(*net.TCPConn)) *Backend {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", handler)
}

// StartAt is Start on addr: a port used before (a member coming back) is
// retried for up to 5 s while a closing socket still holds it.
func StartAt(t testing.TB, addr string, handler func(*net.TCPConn)) *Backend {
	t.Helper()
	ln, err := Listen(t, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	b := &Backend{ln: ln, handler: handler, conns: make(map[*net.TCPConn]struct{})}
	b.wg.Add(1)
	go b.acceptLoop()
	t.Cleanup(b.Close)
	return b
}

// Listen listens on addr, retrying for up to 5 s while the port is still
// held by a closing socket. The caller closes the listener.
func Listen(t testing.TB, addr string) (*net.TCPListener, error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln.(*net.TCPListener), nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *Backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.AcceptTCP()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.done {
			b.mu.Unlock()
			_ = c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.accepted.Add(1)
		if n := b.open.Add(1); n > b.peak.Load() {
			b.peak.Store(n) // under b.mu: no lost update
		}
		b.wg.Add(1)
		b.mu.Unlock()
		go b.serve(c)
	}
}

func (b *Backend) serve(c *net.TCPConn) {
	defer b.wg.Done()
	defer func() {
		_ = c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		b.open.Add(-1)
	}()
	b.handler(c)
}

// Addr returns the address the Backend listens on, host:port.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Accepted returns how many connections the Backend accepted.
func (b *Backend) Accepted() int { return int(b.accepted.Load()) }

// Open returns how many connections are open: accepted, handler running.
func (b *Backend) Open() int { return int(b.open.Load()) }

// Peak returns the most connections that were open at once.
func (b *Backend) Peak() int { return int(b.peak.Load()) }

// CloseConns closes every open connection (their handlers see the error
// and return); the Backend goes on accepting.
func (b *Backend) CloseConns() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		_ = c.Close()
	}
}

// Close stops listening, closes every open connection and waits for the
// handlers. Further calls do nothing more.
func (b *Backend) Close() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	_ = b.ln.Close()
	b.CloseConns()
	b.wg.Wait()
}

// Echo is a handler that copies everything back and half-closes when the
// client does.
func Echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// DeadAddr returns a 127.0.0.1 address nobody listens on: a connect to it
// is refused.
func DeadAddr(t testing.TB) string {
	t.Helper()
	return FreeAddr(t)
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago:
// one to configure a listener on when the test must know it beforehand
// (a reload that keeps it, a binary's config).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Need returns the path of program, which a test starts for real
// (redis-server, nginx, chromium ...). When it is missing the test is
// skipped, naming the Debian package that has it; under CI (the variable
// CI set, as .ci/run does) it fails instead, because CI installs it.
func Need(t testing.TB, program, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; CI must install it (.ci/run: apt-get install %s)", program, debianPackage)
	}
	t.Skipf("%s not installed (apt-get install %s); CI installs it", program, debianPackage)
	return ""
}

// Missing ends a test that needs what this machine lacks (IPv6, a
// pseudo-terminal ...), saying what with format and args: it skips, or,
// under CI (the variable CI set), fails, because CI's machines (Debian, as
// root) have it and a skip there would hide a path nobody tests.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI must provide it", msg)
	}
	t.Skipf("%s; CI provides it, so there this fails", msg)
}
