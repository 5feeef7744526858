package proxy

import (
	"io"
	"net/http"
	"testing"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// A client that reached tether over TLS is an https client: the member is
// told X-Forwarded-Proto: https (a member that redirects http to https
// would otherwise send the client round in a loop).
func TestHTTPSVirtualServerForwardsProtoHTTPS(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "a", "a.test", testpki.Options{})
	seen := make(chan string, 1)
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Get("X-Forwarded-Proto"):
		default:
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.addr()))
	if status, body, _ := tlsGet(t, p.addr("vs"), ca.ClientConfig("a.test")); status != "200 OK" || body != "ok" {
		t.Fatalf("got %q %q", status, body)
	}
	if got := <-seen; got != "https" {
		t.Fatalf("X-Forwarded-Proto = %q for a TLS client, want https", got)
	}
}
