package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/acmetest"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// TestMain checks that no goroutine outlives the tests, except the ones
// pebble and certmagic never stop (acmetest.GoleakOptions).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, acmetest.GoleakOptions()...) }

// files is a leaf's cert and key files as config hands them over.
func files(l testpki.Leaf) config.Certificate {
	return config.Certificate{Cert: l.CertFile, Key: l.KeyFile}
}

// staticConfig is a virtual server's TLS with files, as config would hand
// it over (tickets on, no watcher, profile intermediate).
func staticConfig(certs ...config.Certificate) config.TLS {
	d := config.DefaultTLS(config.ModeTCP)
	return config.TLS{
		Certificates:      certs,
		Profile:           d.Profile,
		MinVersion:        "1.2",
		MinVersionID:      tls.VersionTLS12,
		CipherSuites:      d.CipherSuites,
		CipherSuiteIDs:    d.CipherSuiteIDs,
		Curves:            d.Curves,
		CurveIDs:          d.CurveIDs,
		ClientAuth:        config.ClientAuthNone,
		SessionTickets:    true,
		TicketKeyRotation: time.Hour,
		HandshakeTimeout:  5 * time.Second,
	}
}

// newManager builds a started Manager closed at the end of the test, with
// its logs observed.
func newManager(t *testing.T, c config.TLS) (*Manager, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	m, err := New(c, zap.New(core))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return m, logs
}

// tlsServer accepts TLS conns on 127.0.0.1, completes each handshake, drops
// the conns that only answered an ACME challenge and hands the others to
// handle. Everything ends with the test.
type tlsServer struct {
	addr       string
	ln         net.Listener
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      map[net.Conn]struct{}
	challenges atomic.Int64
	states     chan tls.ConnectionState // of every completed non-challenge handshake
}

func serveTLS(t *testing.T, conf *tls.Config, handle func(*tls.Conn)) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveTLSOn(t, ln, conf, handle)
}

func serveTLSOn(t *testing.T, ln net.Listener, conf *tls.Config, handle func(*tls.Conn)) *tlsServer {
	t.Helper()
	s := &tlsServer{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}, states: make(chan tls.ConnectionState, 64)}
	s.wg.Go(func() { s.acceptLoop(conf, handle) })
	t.Cleanup(func() {
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *tlsServer) acceptLoop(conf *tls.Config, handle func(*tls.Conn)) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				_ = c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			tc := tls.Server(c, conf)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tc.HandshakeContext(ctx); err != nil {
				return
			}
			cs := tc.ConnectionState()
			if IsChallenge(cs) {
				s.challenges.Add(1)
				return
			}
			select {
			case s.states <- cs:
			default:
			}
			handle(tc)
		})
	}
}

func echo(c *tls.Conn) { _, _ = io.Copy(c, c) }

// dial opens a TLS conn to addr and completes the client handshake.
func dial(t *testing.T, addr string, conf *tls.Config) (*tls.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := tls.Dialer{Config: conf}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*tls.Conn), nil
}

// exchange writes a message and reads the echo back. In TLS 1.3 this is
// also where the client learns that the server refused its certificate,
// and reads the session tickets the server sent after the handshake.
func exchange(c *tls.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}
