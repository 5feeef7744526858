package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/ocsp"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// ocspResponder is an in-process OCSP responder (RFC 6960 over HTTP POST)
// on 127.0.0.1 that answers Good for every serial, signed by the CA itself.
type ocspResponder struct {
	srv  *httptest.Server
	asks atomic.Int64
}

func startOCSPResponder(t *testing.T, ca *testpki.CA) *ocspResponder {
	t.Helper()
	r := &ocspResponder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.asks.Add(1)
		body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		now := time.Now()
		der, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{
			Status:       ocsp.Good,
			SerialNumber: q.SerialNumber,
			ThisUpdate:   now.Add(-time.Minute),
			NextUpdate:   now.Add(time.Hour),
		}, ca.Signer())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(der)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// ocspLeaf issues a 90-day leaf for a.test (past tether's expiry warning,
// and past the 7 days under which certmagic stays silent about a failed
// staple) whose AIA names responderURL, with the CA in the cert file.
func ocspLeaf(t *testing.T, ca *testpki.CA, responderURL string) testpki.Leaf {
	return ca.Issue(t, "ocsp", "a.test", testpki.Options{
		Chain: true, NotAfter: time.Now().Add(90 * 24 * time.Hour), OCSPServer: []string{responderURL},
	})
}

// handshake does a TLS handshake with a.test as SNI (crypto/tls always asks
// for the certificate status) and returns the conn's state.
func handshake(t *testing.T, addr string, ca *testpki.CA) tls.ConnectionState {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, ca.ClientConfig("a.test"))
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState()
}

// A certificate whose AIA names an OCSP responder gets the responder's
// answer stapled (certmagic fetches it when the file is loaded): the
// client's handshake carries a response that parses, is signed by the
// issuer, and says Good for the leaf's serial.
func TestOCSPStapledFromTheCertificatesResponder(t *testing.T) {
	ca := testpki.New(t)
	resp := startOCSPResponder(t, ca)
	leaf := ocspLeaf(t, ca, resp.srv.URL)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", "127.0.0.1:1"))
	cs := handshake(t, p.addr("vs"), ca)
	if len(cs.OCSPResponse) == 0 {
		t.Fatalf("no OCSP staple in the handshake (responder asked %d times)", resp.asks.Load())
	}
	r, err := ocsp.ParseResponseForCert(cs.OCSPResponse, cs.PeerCertificates[0], ca.Cert) // checks the issuer's signature
	if err != nil {
		t.Fatalf("staple: %v", err)
	}
	if r.Status != ocsp.Good || r.SerialNumber.Cmp(big.NewInt(leaf.Serial)) != 0 {
		t.Fatalf("staple says status %d for serial %v, want Good (%d) for %d", r.Status, r.SerialNumber, ocsp.Good, leaf.Serial)
	}
	if !bytes.Equal(cs.PeerCertificates[0].Raw, leaf.Pair.Leaf.Raw) {
		t.Fatal("served another certificate")
	}
	// A client without SNI (an IP address is never sent as SNI) gets the
	// default certificate, through its own lookup: stapled too.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.addr("vs"), &tls.Config{
		InsecureSkipVerify: true, // no name to verify; the staple is what is checked
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cs := c.ConnectionState(); cs.ServerName != "" || len(cs.OCSPResponse) == 0 {
		t.Fatalf("without SNI: server name %q, %d bytes of staple", cs.ServerName, len(cs.OCSPResponse))
	}
}

// A responder that is down costs the staple, not the service: the
// virtual server starts, handshakes succeed without a staple, and
// certmagic's warning names the failure.
func TestOCSPResponderDownServesWithoutStapleAndLogs(t *testing.T) {
	ca := testpki.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	leaf := ocspLeaf(t, ca, down)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", "127.0.0.1:1"))
	if cs := handshake(t, p.addr("vs"), ca); len(cs.OCSPResponse) != 0 {
		t.Fatalf("a staple from a responder that is down: %d bytes", len(cs.OCSPResponse))
	}
	logged := p.logs.FilterMessage("stapling OCSP").FilterLevelExact(zapcore.WarnLevel).All()
	if len(logged) == 0 {
		t.Fatal("no warning logged for the failed staple")
	}
	t.Logf("logged: %s %v", logged[0].Message, logged[0].ContextMap()["error"])
}

// ocsp_stapling = false: the responder is never asked and nothing is
// stapled.
func TestOCSPStaplingOffNeverAsks(t *testing.T) {
	ca := testpki.New(t)
	resp := startOCSPResponder(t, ca)
	leaf := ocspLeaf(t, ca, resp.srv.URL)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, "ocsp_stapling = false"), "", "127.0.0.1:1"))
	if cs := handshake(t, p.addr("vs"), ca); len(cs.OCSPResponse) != 0 {
		t.Fatalf("stapled with ocsp_stapling = false: %d bytes", len(cs.OCSPResponse))
	}
	if n := resp.asks.Load(); n != 0 {
		t.Fatalf("the responder was asked %d times with ocsp_stapling = false", n)
	}
}
