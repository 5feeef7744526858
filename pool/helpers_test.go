package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is an in-process echo member (a socktest.Backend) that also
// counts the conns that ended with a reset.
type backend struct {
	*socktest.Backend
	addr   string
	resets atomic.Int64
}

func newBackend(t *testing.T) *backend { return newBackendAt(t, "127.0.0.1:0") }

// newBackendAt listens on addr (a port used before, to bring a member back).
func newBackendAt(t *testing.T, addr string) *backend {
	t.Helper()
	b := &backend{}
	b.Backend = socktest.StartAt(t, addr, b.echo)
	b.addr = b.Addr()
	return b
}

// echo copies back what it reads until the conn ends, counting a reset.
func (b *backend) echo(c *net.TCPConn) {
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
