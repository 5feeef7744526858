package certs

import (
	"crypto/rsa"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

func TestSNIPicksCertificateElseDefault(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "static-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	b := files(ca.Issue(t, "b", "b.tether.test", testpki.Options{RSA: true}))
	b.Default = true // not the first: the default is chosen, not positional
	w := files(ca.Issue(t, "w", "*.w.tether.test", testpki.Options{}))
	c := staticConfig(a, b, w)
	c.ALPN = []string{"http/1.1"}
	m, _ := newManager(t, c)
	srv := serveTLS(t, m.TLSConfig(), echo)

	for _, tc := range []struct {
		name, sni, want string
		verify          bool // verify against the CA for sni (else accept any)
	}{
		{"exact ECDSA", "a.tether.test", "a.tether.test", true},
		{"exact RSA", "b.tether.test", "b.tether.test", true},
		{"wildcard one label", "x.w.tether.test", "*.w.tether.test", true},
		{"wildcard is one label only", "y.x.w.tether.test", "b.tether.test", false},
		{"unknown name", "c.tether.test", "b.tether.test", false},
		{"no SNI", "", "b.tether.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := &tls.Config{ServerName: tc.sni, RootCAs: ca.Pool, NextProtos: []string{"h2", "http/1.1"}}
			if !tc.verify {
				conf.InsecureSkipVerify = true
			}
			conn, err := dial(t, srv.addr, conf)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			cs := conn.ConnectionState()
			leaf := cs.PeerCertificates[0]
			if got := leaf.DNSNames[0]; got != tc.want {
				t.Fatalf("served %q, want %q", got, tc.want)
			}
			if cs.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("ALPN %q, want http/1.1", cs.NegotiatedProtocol)
			}
			if err := exchange(conn, "ping"); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("RSA certificate keeps its key type", func(t *testing.T) {
		conn, err := dial(t, srv.addr, &tls.Config{ServerName: "b.tether.test", RootCAs: ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := conn.ConnectionState().PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
			t.Fatalf("b.tether.test served a %T key, want RSA", conn.ConnectionState().PeerCertificates[0].PublicKey)
		}
	})
}

func TestFirstCertificateIsDefaultWhenNoneIsMarked(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "static-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	b := files(ca.Issue(t, "b", "b.tether.test", testpki.Options{RSA: true}))
	m, _ := newManager(t, staticConfig(a, b))
	srv := serveTLS(t, m.TLSConfig(), echo)
	conn, err := dial(t, srv.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]; got != "a.tether.test" {
		t.Fatalf("no SNI got %q, want the first certificate a.tether.test", got)
	}
}

func TestMinVersion13RefusesTLS12Client(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "static-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.MinVersion, c.MinVersionID = "1.3", tls.VersionTLS13
	m, _ := newManager(t, c)
	srv := serveTLS(t, m.TLSConfig(), echo)

	if _, err := dial(t, srv.addr, &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a TLS 1.2-only client completed a handshake with min_version 1.3")
	}
	conn, err := dial(t, srv.addr, &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool})
	if err != nil {
		t.Fatalf("TLS 1.3 client: %v", err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %x, want TLS 1.3", v)
	}
}

func TestNewNamesTheBadFile(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "static-ca"})
	dir := t.TempDir()
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	b := files(ca.Issue(t, "b", "b.tether.test", testpki.Options{}))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert config.Certificate
		want []string
	}{
		{"missing cert", config.Certificate{Cert: filepath.Join(dir, "nope.crt"), Key: a.Key}, []string{`cert "` + filepath.Join(dir, "nope.crt") + `"`, "no such file"}},
		{"missing key", config.Certificate{Cert: a.Cert, Key: filepath.Join(dir, "nope.key")}, []string{`key "` + filepath.Join(dir, "nope.key") + `"`, "no such file"}},
		{"cert not PEM", config.Certificate{Cert: garbage, Key: a.Key}, []string{`cert "` + garbage + `"`, "no PEM CERTIFICATE"}},
		{"key not PEM", config.Certificate{Cert: a.Cert, Key: garbage}, []string{`key "` + garbage + `"`}},
		{"key of another cert", config.Certificate{Cert: a.Cert, Key: b.Key}, []string{`key "` + b.Key + `" does not match cert "` + a.Cert + `"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(staticConfig(tc.cert), nil)
			if err == nil {
				m.Close()
				t.Fatal("New accepted a bad certificate pair")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCertificatesListsFiles(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "static-ca"})
	la := ca.Issue(t, "a", "a.tether.test", testpki.Options{Names: []string{"127.0.0.1"}})
	a, leafA := files(la), la.Pair.Leaf
	m, _ := newManager(t, staticConfig(a))
	got := m.Certificates()
	if len(got) != 1 {
		t.Fatalf("%d certificates, want 1", len(got))
	}
	ci := got[0]
	if ci.Source != a.Cert || !ci.NotAfter.Equal(leafA.NotAfter) || !strings.Contains(ci.Issuer, "static-ca") ||
		strings.Join(ci.Names, ",") != "a.tether.test,127.0.0.1" {
		t.Fatalf("got %+v", ci)
	}
	if err := m.Ready(t.Context(), "a.tether.test", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}
