package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/proxy/certs/acmetest"
)

// ACME end to end: an in-process pebble CA validates the tls-alpn-01
// challenge by connecting to tether's own https virtual server (no
// always-valid shortcut); tether then serves the issued certificate, and an
// HTTPS request through it verifies against the CA's root.
func TestTLSACMECertificateThroughTether(t *testing.T) {
	const name = "acme-e2e.tether.test"
	port := acmetest.FreePort(t)
	ca := acmetest.Start(t, acmetest.FreePort(t), port)
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	cfg := fmt.Sprintf(`
[log]
level = "debug"
[pool.p]
members = [ { address = %q } ]
[pool.p.health]
type = "none"
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:%d"
mode = "http"
pool = "p"
[virtual_server.tls]
acme = { email = "ops@tether.test", ca = %q, ca_root = %q, domains = [%q], storage = %q, challenges = ["tls-alpn-01"], tls_alpn_port = %d }
`, be.Addr(), port, ca.DirectoryURL, ca.ServerCAFile, name, t.TempDir(), port)
	p := startProxy(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.srv.VirtualServer("vs").tls.certs.Ready(ctx, name); err != nil {
		t.Fatalf("certificate for %s: %v", name, err)
	}
	st := p.srv.VirtualServer("vs").TLSStats()
	if st.Challenges == 0 {
		t.Fatalf("tether answered no tls-alpn-01 challenge: %+v", st)
	}
	if ca.Orders() != 1 {
		t.Fatalf("the CA got %d orders, want 1", ca.Orders())
	}
	status, body, cs := tlsGet(t, p.addr("vs"), &tls.Config{RootCAs: ca.Roots(), ServerName: name})
	if status != "200 OK" || body != "ok" {
		t.Fatalf("got %q %q", status, body)
	}
	if leaf := cs.PeerCertificates[0]; leaf.DNSNames[0] != name {
		t.Fatalf("served a certificate for %v", leaf.DNSNames)
	}
}

// http-01 with tether holding the challenge port: certmagic cannot bind it
// and counts on the listener there, so tether's plain http virtual server
// answers the CA's validation request itself (the member never sees it)
// and forwards every other /.well-known/acme-challenge/ request as usual.
func TestHTTP01AnsweredByTethersOwnHTTPVirtualServer(t *testing.T) {
	const name = "acme-http01.tether.test"
	webPort, tlsPort := acmetest.FreePort(t), acmetest.FreePort(t)
	ca := acmetest.Start(t, webPort, tlsPort)
	var mu sync.Mutex
	var paths []string
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		_, _ = io.WriteString(w, "member")
	}, nil)
	cfg := fmt.Sprintf(`
[log]
level = "info"
[pool.p]
members = [ { address = %q } ]
[pool.p.health]
type = "none"
[[virtual_server]]
name = "web"
listen = "127.0.0.1:%d"
mode = "http"
pool = "p"
[[virtual_server]]
name = "secure"
listen = "127.0.0.1:%d"
mode = "http"
pool = "p"
[virtual_server.tls]
acme = { ca = %q, ca_root = %q, domains = [%q], storage = %q, challenges = ["http-01"], http_port = %d }
`, be.Addr(), webPort, tlsPort, ca.DirectoryURL, ca.ServerCAFile, name, t.TempDir(), webPort)
	p := startProxy(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.srv.VirtualServer("secure").tls.certs.Ready(ctx, name); err != nil {
		t.Fatalf("certificate for %s: %v", name, err)
	}
	status, body, cs := tlsGet(t, p.addr("secure"), &tls.Config{RootCAs: ca.Roots(), ServerName: name})
	if status != "200 OK" || body != "member" || cs.PeerCertificates[0].DNSNames[0] != name {
		t.Fatalf("got %q %q from a certificate for %v", status, body, cs.PeerCertificates[0].DNSNames)
	}
	challenged := p.logs.FilterField(zap.String("member", "acme-challenge")).Len()
	if challenged == 0 {
		t.Fatal("no access line shows tether answering the http-01 validation")
	}
	mu.Lock()
	for _, path := range paths {
		if strings.HasPrefix(path, "/.well-known/acme-challenge/") {
			t.Errorf("the member saw the validation request %s", path)
		}
	}
	mu.Unlock()

	// No challenge in progress: the path is the member's.
	code, got, _ := get(t, proxyClient(false), "http://"+p.addr("web")+"/.well-known/acme-challenge/not-ours")
	if code != 200 || got != "member" {
		t.Fatalf("a request for an unknown token got %d %q, want the member's answer", code, got)
	}
}
