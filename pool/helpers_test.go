package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is an in-process echo server on 127.0.0.1 that counts what it
// sees: conns accepted, conns still open, conns that ended with a reset.
type backend struct {
	ln       net.Listener
	addr     string
	wg       sync.WaitGroup
	accepted atomic.Int64
	open     atomic.Int64
	resets   atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
	done  bool
}

func newBackend(t *testing.T) *backend { return newBackendAt(t, "127.0.0.1:0") }

// newBackendAt listens on addr (a port used before, to bring a member back).
func newBackendAt(t *testing.T, addr string) *backend {
	t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // port still held by a closing socket
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	b := &backend{ln: ln, addr: ln.Addr().String()}
	b.wg.Add(1)
	go b.acceptLoop()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.done {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns = append(b.conns, c)
		b.accepted.Add(1)
		b.open.Add(1)
		b.wg.Add(1)
		b.mu.Unlock()
		go b.echo(c)
	}
}

func (b *backend) echo(c net.Conn) {
	defer b.wg.Done()
	defer b.open.Add(-1)
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
			if errors.Is(err, syscall.ECONNRESET) {
				b.resets.Add(1)
			}
			return
		}
	}
}

// closeConns closes every conn accepted so far (the member closing idle
// conns, as a keepalive timeout would).
func (b *backend) closeConns() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}

// Close stops listening, closes every conn and waits for the goroutines.
func (b *backend) Close() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	b.ln.Close()
	b.closeConns()
	b.wg.Wait()
}

// deadAddr returns a 127.0.0.1 address nobody listens on (connect refused).
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// testPool returns a config for addrs with health off, 1 s connect timeout
// and 2 retries; tests change what they exercise.
func testPool(method string, addrs ...string) config.Pool {
	cfg := config.Pool{
		Name:           "test",
		Method:         method,
		ConnectTimeout: time.Second,
		ConnectRetries: 2,
		Health:         config.Health{Type: config.HealthNone, Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1},
		Reuse:          config.DefaultReuse(),
	}
	for _, a := range addrs {
		cfg.Members = append(cfg.Members, config.Member{Address: a, Weight: 1, State: config.StateEnabled})
	}
	return cfg
}

func fastHealth(rise, fall int) config.Health {
	return config.Health{Type: config.HealthTCP, Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: rise, Fall: fall}
}

// startPool builds and starts a pool that the test closes at its end (before
// the backends created earlier, cleanups run last-in first-out).
func startPool(t *testing.T, cfg config.Pool) *Pool {
	t.Helper()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	t.Cleanup(p.Close)
	return p
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// connect calls d.Connect with a deadline and registers the conn's close
// and release for the test's end.
func connect(t *testing.T, d *Dialer) (*Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.Connect(ctx, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000})
	if err == nil {
		t.Cleanup(func() { closeConn(c) })
	}
	return c, err
}

func closeConn(c *Conn) {
	c.TCP.Close()
	c.Release()
}

// assertEcho writes through c and reads the same bytes back.
func assertEcho(t *testing.T, c *Conn) {
	t.Helper()
	msg := []byte("ping " + c.Member.Address())
	c.TCP.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.TCP.SetDeadline(time.Time{})
	if _, err := c.TCP.Write(msg); err != nil {
		t.Fatalf("write to %s: %v", c.Member.Address(), err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c.TCP, got); err != nil {
		t.Fatalf("read echo from %s: %v", c.Member.Address(), err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}
