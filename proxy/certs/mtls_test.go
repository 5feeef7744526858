package certs

import (
	"crypto/tls"
	"testing"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

func TestClientAuth(t *testing.T) {
	serverCA := testpki.NewCA(t, testpki.CAOptions{Name: "server-ca"})
	clientCA := testpki.NewCA(t, testpki.CAOptions{Name: "client-ca"})
	otherCA := testpki.NewCA(t, testpki.CAOptions{Name: "other-ca"})
	a := files(serverCA.Issue(t, "a", "a.tether.test", testpki.Options{}))
	good := clientCA.Issue(t, "client", "client.tether.test", testpki.Options{Client: true}).Pair
	stranger := otherCA.Issue(t, "client", "stranger.tether.test", testpki.Options{Client: true}).Pair

	for _, tc := range []struct {
		policy       string
		cert         *tls.Certificate
		pass, chains bool
	}{
		{config.ClientAuthRequire, nil, false, false},
		{config.ClientAuthRequire, &good, true, true},
		{config.ClientAuthRequire, &stranger, false, false},
		{config.ClientAuthRequest, nil, true, false},
		{config.ClientAuthRequest, &good, true, true},
		{config.ClientAuthRequest, &stranger, false, false},
		{config.ClientAuthNone, &good, true, false},
	} {
		name := tc.policy + "/no cert"
		if tc.cert != nil {
			name = tc.policy + "/" + tc.cert.Leaf.Subject.CommonName
		}
		t.Run(name, func(t *testing.T) {
			c := staticConfig(a)
			c.ClientAuth = tc.policy
			if tc.policy != config.ClientAuthNone {
				c.ClientCA = clientCA.File
			}
			m, _ := newManager(t, c)
			srv := serveTLS(t, m.TLSConfig(), echo)
			conf := &tls.Config{ServerName: "a.tether.test", RootCAs: serverCA.Pool}
			if tc.cert != nil {
				// Sent whatever CAs the server names (Go's client would
				// otherwise keep back a certificate of another CA).
				conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tc.cert, nil }
			}
			// TLS 1.3: the client's handshake ends before the server has
			// checked its certificate; the refusal shows on the first read.
			conn, err := dial(t, srv.addr, conf)
			if err == nil {
				err = exchange(conn, "hello")
			}
			if tc.pass != (err == nil) {
				t.Fatalf("pass = %v, want %v (err %v)", err == nil, tc.pass, err)
			}
			if !tc.pass {
				return
			}
			cs := <-srv.states
			if got := len(cs.VerifiedChains) > 0; got != tc.chains {
				t.Fatalf("verified chains present = %v, want %v", got, tc.chains)
			}
			if tc.chains && cs.VerifiedChains[0][len(cs.VerifiedChains[0])-1].Subject.CommonName != "client-ca" {
				t.Fatal("the chain does not end at the client CA")
			}
		})
	}
}

func TestClientAuthNeedsClientCA(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "server-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.ClientAuth = config.ClientAuthRequire
	if m, err := New(c, nil); err == nil {
		m.Close()
		t.Fatal("client_auth require without client_ca was accepted")
	}
	c.ClientCA = t.TempDir() + "/missing.pem"
	m, err := New(c, nil)
	if err == nil {
		m.Close()
		t.Fatal("a missing client_ca file was accepted")
	}
	if want := `client_ca "` + c.ClientCA + `"`; !contains(err.Error(), want) {
		t.Fatalf("error %q lacks %q", err, want)
	}
}
