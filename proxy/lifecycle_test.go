package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestStartFailsCleanlyWhenPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	be := socktest.Start(t, socktest.Echo)
	cfg, err := config.Parse([]byte(tcpConfig("", "", "", be.Addr()) + `
[[virtual_server]]
name = "clash"
listen = "` + busy.Addr().String() + `"
pool = "p"
`))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil {
		_ = srv.Shutdown(context.Background())
		t.Fatal("Start succeeded on a port in use")
	}
	for _, want := range []string{`virtual_server "clash"`, busy.Addr().String(), "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	// The first listener, bound before the clash, was released.
	if vs := srv.VirtualServer("vs"); vs.Addr() != nil {
		if c, err := net.DialTimeout("tcp", vs.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Fatal("the first virtual server still accepts after a failed Start")
		}
	}
}

// Shutdown stops accepting at once, lets an open connection finish within
// the drain time, and cuts the ones still open when it ends.
func TestShutdownDrainsThenCuts(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	cfg, err := config.Parse([]byte(tcpConfig("", "", "", be.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := srv.ListenAddr("vs").String()
	finishing, _ := net.Dial("tcp", addr)
	lingering, _ := net.Dial("tcp", addr)
	defer finishing.Close()
	defer lingering.Close()
	for _, c := range []net.Conn{finishing, lingering} {
		_, _ = c.Write([]byte("x"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()

	socktest.WaitFor(t, 2*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// The open connection still works during the drain and finishes cleanly.
	if _, err := finishing.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(finishing, make([]byte, 1)); err != nil {
		t.Fatalf("open connection broken during drain: %v", err)
	}
	_ = finishing.(*net.TCPConn).CloseWrite()
	if _, err := readAll(finishing); err != nil {
		t.Fatal(err)
	}
	// The other one never finishes: cut when the drain time ends.
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want DeadlineExceeded (a connection was cut)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	_ = lingering.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := readAll(lingering); isTimeout(err) {
		t.Fatal("lingering connection was not closed by Shutdown")
	}
}

func TestRedisThroughTether(t *testing.T) {
	bin := socktest.Need(t, "redis-server", "redis-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	redisAddr := "127.0.0.1:" + strconv.Itoa(port)
	socktest.WaitFor(t, 5*time.Second, "redis-server to listen", func() bool {
		c, err := net.Dial("tcp", redisAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	p := startProxy(t, tcpConfig("", "", "preconnect = 2", redisAddr))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	send := func(args ...string) string {
		t.Helper()
		var b strings.Builder
		b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
		for _, a := range args {
			b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if got := send("SET", "tether", "through the proxy"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	if got := send("GET", "tether"); got != "$17\r\nthrough the proxy\r\n" {
		t.Fatalf("GET = %q", got)
	}
	if got := send("QUIT"); got != "+OK\r\n" {
		t.Fatalf("QUIT = %q", got)
	}
	if rest, err := readAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after QUIT: %q %v (want EOF: redis closed, tether relayed the FIN)", rest, err)
	}
}

// Shutdown's cut ends a request body still streaming in: the per-read idle
// deadline of a body must not re-arm over the cut (else a slow upload holds
// the shutdown for as long as it lasts).
func TestShutdownCutsAStreamingRequestBody(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c := p.dial(t, "vs")
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a chunk every 20 ms for up to 10 s
		for i := 0; i < 500; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := io.WriteString(c, "4\r\ndata\r\n"); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the body is streaming
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = p.srv.Shutdown(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %s with an upload streaming, want the cut at ~300ms", took)
	}
}
