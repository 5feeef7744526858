package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
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
)

// TestMain checks that no goroutine outlives the tests, except the ones
// pebble and certmagic never stop (acmetest.GoleakOptions).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, acmetest.GoleakOptions()...) }

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	file string // the CA certificate as PEM
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), name+".pem")
	writeFile(t, file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return &testCA{cert: cert, key: key, file: file}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue makes a leaf for names (DNS names or IP addresses) with a new key:
// "ecdsa" (P-256) or "rsa" (2048). usage is server or client auth.
func (ca *testCA) issue(t *testing.T, keyType string, usage x509.ExtKeyUsage, names ...string) (certPEM, keyPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	var key crypto.Signer
	var err error
	switch keyType {
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("key type %q", keyType)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), leaf
}

// writePair issues a server certificate and writes it to dir/base.crt and
// dir/base.key (each through a rename, as deploy tools do).
func (ca *testCA) writePair(t *testing.T, dir, base, keyType string, names ...string) (config.Certificate, *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, leaf := ca.issue(t, keyType, x509.ExtKeyUsageServerAuth, names...)
	c := config.Certificate{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	writeFile(t, c.Cert, certPEM)
	writeFile(t, c.Key, keyPEM)
	return c, leaf
}

// clientCert issues a client certificate.
func (ca *testCA) clientCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, _ := ca.issue(t, "ecdsa", x509.ExtKeyUsageClientAuth, name)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeFile replaces file by a rename, so a reader never sees half of it.
func writeFile(t *testing.T, file string, b []byte) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// staticConfig is a virtual server's TLS with files, as config would hand
// it over (tickets on, no watcher).
func staticConfig(certs ...config.Certificate) config.TLS {
	return config.TLS{
		Certificates:      certs,
		MinVersion:        "1.2",
		MinVersionID:      tls.VersionTLS12,
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const (
	x509ServerAuth = x509.ExtKeyUsageServerAuth
	x509ClientAuth = x509.ExtKeyUsageClientAuth
)
