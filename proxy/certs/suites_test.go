package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// loadTLS loads a config whose virtual server has [virtual_server.tls]
// vsBody and whose pool has [pool.p.tls] poolBody, as `tether run` would,
// and returns both tables.
func loadTLS(t *testing.T, dir, vsBody, poolBody string) (config.TLS, config.PoolTLS) {
	t.Helper()
	text := fmt.Sprintf(`
[pool.p]
members = [{ address = "127.0.0.1:6379" }]
[pool.p.tls]
%s
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:7379"
pool = "p"
[virtual_server.tls]
%s
`, poolBody, vsBody)
	path := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return *cfg.VirtualServers[0].TLS, *cfg.Pools["p"].TLS
}

// handshake dials addr with conf, and on success checks that the conn
// carries data.
func handshake(t *testing.T, addr string, conf *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	c, err := dial(t, addr, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	if err := exchange(c, "ping"); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// With the defaults (Mozilla intermediate) a TLS 1.2 client gets an AEAD
// suite or nothing: one offering only CBC (or RSA key exchange) suites is
// refused, for an ECDSA and for an RSA certificate.
func TestServerDefaultsRefuseCBCAndAcceptAEADSuites(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir, Name: "suites-ca"})
	ca.Issue(t, "ec", "ec.tether.test", testpki.Options{})
	ca.Issue(t, "rsa", "rsa.tether.test", testpki.Options{RSA: true})
	vs, _ := loadTLS(t, dir, `certificates = [{ cert = "ec.pem", key = "ec.key" }, { cert = "rsa.pem", key = "rsa.key" }]`, "")
	m, _ := newManager(t, vs)
	srv := serveTLS(t, m.TLSConfig(), echo)

	for _, tc := range []struct {
		sni   string
		suite uint16
		ok    bool
	}{
		{"ec.tether.test", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{"ec.tether.test", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, true},
		{"ec.tether.test", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{"ec.tether.test", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{"ec.tether.test", tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{"rsa.tether.test", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true},
		{"rsa.tether.test", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, true},
		{"rsa.tether.test", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{"rsa.tether.test", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
		{"rsa.tether.test", tls.TLS_RSA_WITH_AES_256_CBC_SHA, false},
		{"rsa.tether.test", tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
	} {
		t.Run(tls.CipherSuiteName(tc.suite), func(t *testing.T) {
			cs, err := handshake(t, srv.addr, &tls.Config{ServerName: tc.sni, RootCAs: ca.Pool,
				MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite}})
			switch {
			case tc.ok && err != nil:
				t.Fatalf("AEAD suite refused: %v", err)
			case tc.ok && cs.CipherSuite != tc.suite:
				t.Fatalf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
			case !tc.ok && err == nil:
				t.Fatalf("handshake succeeded with %s, want it refused", tls.CipherSuiteName(cs.CipherSuite))
			}
		})
	}
}

// The defaults offer X25519MLKEM768, X25519, P-256 and P-384 only: a
// client that offers only P-521 is refused on TLS 1.2 and on 1.3; a Go
// client with its defaults gets the post-quantum hybrid on TLS 1.3.
func TestServerDefaultsHonourCurves(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir, Name: "curves-ca"})
	ca.Issue(t, "ec", "ec.tether.test", testpki.Options{})
	vs, _ := loadTLS(t, dir, `certificates = [{ cert = "ec.pem", key = "ec.key" }]`, "")
	m, _ := newManager(t, vs)
	srv := serveTLS(t, m.TLSConfig(), echo)

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range []struct {
			offer []tls.CurveID
			want  tls.CurveID // 0: refused
		}{
			{[]tls.CurveID{tls.CurveP521}, 0},
			{[]tls.CurveID{tls.X25519}, tls.X25519},
			{[]tls.CurveID{tls.CurveP256}, tls.CurveP256},
			{[]tls.CurveID{tls.CurveP384}, tls.CurveP384},
			{[]tls.CurveID{tls.CurveP521, tls.CurveP384}, tls.CurveP384},
		} {
			t.Run(fmt.Sprintf("%s %v", tls.VersionName(v), tc.offer), func(t *testing.T) {
				cs, err := handshake(t, srv.addr, &tls.Config{ServerName: "ec.tether.test", RootCAs: ca.Pool,
					MinVersion: v, MaxVersion: v, CurvePreferences: tc.offer})
				switch {
				case tc.want == 0 && err == nil:
					t.Fatalf("handshake succeeded with %v, want it refused", cs.CurveID)
				case tc.want != 0 && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.want != 0 && cs.CurveID != tc.want:
					t.Fatalf("negotiated %v, want %v", cs.CurveID, tc.want)
				}
			})
		}
	}
	cs, err := handshake(t, srv.addr, &tls.Config{ServerName: "ec.tether.test", RootCAs: ca.Pool})
	if err != nil || cs.Version != tls.VersionTLS13 || cs.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("Go client with defaults: %v %s %v, want TLS 1.3 with X25519MLKEM768", err, tls.VersionName(cs.Version), cs.CurveID)
	}
}

// profile = "modern" is TLS 1.3 only; curves narrowed by the file are
// what the server accepts.
func TestServerProfileModernAndCustomCurves(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir, Name: "modern-ca"})
	ca.Issue(t, "ec", "ec.tether.test", testpki.Options{})
	vs, _ := loadTLS(t, dir, "certificates = [{ cert = \"ec.pem\", key = \"ec.key\" }]\nprofile = \"modern\"\ncurves = [\"P-384\"]", "")
	m, _ := newManager(t, vs)
	srv := serveTLS(t, m.TLSConfig(), echo)
	if _, err := handshake(t, srv.addr, &tls.Config{ServerName: "ec.tether.test", RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a TLS 1.2 client was served under profile modern")
	}
	if _, err := handshake(t, srv.addr, &tls.Config{ServerName: "ec.tether.test", RootCAs: ca.Pool, CurvePreferences: []tls.CurveID{tls.X25519}}); err == nil {
		t.Fatal("X25519 accepted with curves = [\"P-384\"]")
	}
	cs, err := handshake(t, srv.addr, &tls.Config{ServerName: "ec.tether.test", RootCAs: ca.Pool})
	if err != nil || cs.Version != tls.VersionTLS13 || cs.CurveID != tls.CurveP384 {
		t.Fatalf("%v %s %v, want TLS 1.3 with P-384", err, tls.VersionName(cs.Version), cs.CurveID)
	}
}

// Toward members the defaults are the same: a member that only speaks a
// CBC suite, or only P-521, is refused; AEAD suites and the default curves
// are accepted.
func TestMemberSideDefaultsRefuseCBCAndUnlistedCurves(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir, Name: "member-ca"})
	_, pt := loadTLS(t, dir, `acme = { domains = ["x.test"] }`, `ca = "ca.pem"`)
	base, err := ClientConfig(pt, []string{"http/1.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tls12 := func(suite uint16) func(*tls.Config) {
		return func(c *tls.Config) { c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{suite} }
	}
	curve := func(v uint16, id tls.CurveID) func(*tls.Config) {
		return func(c *tls.Config) { c.MinVersion, c.MaxVersion, c.CurvePreferences = v, v, []tls.CurveID{id} }
	}
	for _, tc := range []struct {
		name   string
		mutate func(*tls.Config)
		ok     bool
	}{
		{"CBC only", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA), false},
		{"CBC-SHA256 only", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256), false},
		{"AES-128-GCM only", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), true},
		{"AES-256-GCM only", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384), true},
		{"ChaCha20 only", tls12(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), true},
		{"TLS 1.2 P-521 only", curve(tls.VersionTLS12, tls.CurveP521), false},
		{"TLS 1.3 P-521 only", curve(tls.VersionTLS13, tls.CurveP521), false},
		{"TLS 1.3 P-384 only", curve(tls.VersionTLS13, tls.CurveP384), true},
		{"member defaults", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := member(t, ca, tc.mutate)
			cs, err := handshake(t, srv.addr, ForMember(base, srv.addr))
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && err == nil:
				t.Fatalf("handshake succeeded (%s, %v), want it refused", tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
			case tc.name == "member defaults" && (cs.Version != tls.VersionTLS13 || cs.CurveID != tls.X25519MLKEM768):
				t.Fatalf("with a Go member's defaults: %s %v, want TLS 1.3 and X25519MLKEM768", tls.VersionName(cs.Version), cs.CurveID)
			}
		})
	}
}

// profile = "modern" toward members: a TLS 1.2-only member is refused.
func TestMemberSideModernRefusesTLS12(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir, Name: "member-ca"})
	_, pt := loadTLS(t, dir, `acme = { domains = ["x.test"] }`, "ca = \"ca.pem\"\nprofile = \"modern\"")
	base, err := ClientConfig(pt, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := member(t, ca, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	if _, err := handshake(t, old.addr, ForMember(base, old.addr)); err == nil {
		t.Fatal("a TLS 1.2 member was accepted under profile modern")
	}
	cur := member(t, ca, nil)
	if cs, err := handshake(t, cur.addr, ForMember(base, cur.addr)); err != nil || cs.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3 member: %v %s", err, tls.VersionName(cs.Version))
	}
}
