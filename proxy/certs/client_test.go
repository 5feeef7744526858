package certs

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// member is a TLS member server on 127.0.0.1 with a certificate for
// member.tether.test and 127.0.0.1.
func member(t *testing.T, ca *testpki.CA, mutate func(*tls.Config)) *tlsServer {
	t.Helper()
	cert := ca.Issue(t, "member", "member.tether.test", testpki.Options{Names: []string{"127.0.0.1"}}).Pair
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1", "other"}}
	if mutate != nil {
		mutate(conf)
	}
	return serveTLS(t, conf, echo)
}

// poolTLS is [pool.NAME.tls] with ca and config's defaults.
func poolTLS(ca string) config.PoolTLS {
	c := config.DefaultPoolTLS()
	c.CA = ca
	return c
}

func TestForMemberVerifiesTheMemberHost(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "member-ca"})
	srv := member(t, ca, nil)
	_, port, _ := net.SplitHostPort(srv.addr)

	base, err := ClientConfig(poolTLS(ca.File), []string{"http/1.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An IP host verifies against the certificate's IP addresses.
	conf := ForMember(base, srv.addr)
	if conf.ServerName != "127.0.0.1" {
		t.Fatalf("ServerName %q, want 127.0.0.1", conf.ServerName)
	}
	conn, err := dial(t, srv.addr, conf)
	if err != nil {
		t.Fatalf("IP member: %v", err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ALPN %q, want the default http/1.1", p)
	}
	// A name host: the name is sent and verified (dialed on 127.0.0.1).
	conf = ForMember(base, "member.tether.test:"+port)
	if conf.ServerName != "member.tether.test" {
		t.Fatalf("ServerName %q", conf.ServerName)
	}
	if _, err := dial(t, srv.addr, conf); err != nil {
		t.Fatalf("named member: %v", err)
	}
	if _, err := dial(t, srv.addr, ForMember(base, "wrong.tether.test:"+port)); err == nil {
		t.Fatal("a member whose certificate lacks the name was accepted")
	}
	// A configured server_name wins over the member's host.
	c := poolTLS(ca.File)
	c.ServerName = "member.tether.test"
	c.ALPN = []string{"other"}
	named, err := ClientConfig(c, []string{"http/1.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf = ForMember(named, srv.addr)
	if conf.ServerName != "member.tether.test" {
		t.Fatalf("ServerName %q, want the configured one", conf.ServerName)
	}
	conn, err = dial(t, srv.addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "other" {
		t.Fatalf("ALPN %q, want the configured other", p)
	}
}

func TestClientConfigRejectsUnknownMemberCA(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "member-ca"})
	other := testpki.NewCA(t, testpki.CAOptions{Name: "other-ca"})
	srv := member(t, ca, nil)
	base, err := ClientConfig(poolTLS(other.File), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, srv.addr, ForMember(base, srv.addr)); err == nil {
		t.Fatal("a member signed by another CA was accepted")
	}
}

func TestClientConfigInsecureSkipVerifyWarns(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "member-ca"})
	srv := member(t, ca, nil)
	core, logs := observer.New(zapcore.WarnLevel)
	c := poolTLS("")
	c.InsecureSkipVerify = true
	base, err := ClientConfig(c, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("NOT verified").Len() != 1 {
		t.Fatalf("logs %v: want one warning", logs.All())
	}
	if _, err := dial(t, srv.addr, ForMember(base, srv.addr)); err != nil {
		t.Fatal(err)
	}
}

func TestClientConfigPresentsClientCertificate(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "member-ca"})
	clientCA := testpki.NewCA(t, testpki.CAOptions{Name: "client-ca"})
	srv := member(t, ca, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = clientCA.Pool
	})
	client := clientCA.Issue(t, "client", "tether", testpki.Options{Client: true})
	c := poolTLS(ca.File)
	c.Cert, c.Key = client.CertFile, client.KeyFile
	base, err := ClientConfig(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dial(t, srv.addr, ForMember(base, srv.addr))
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(conn, "mtls"); err != nil {
		t.Fatalf("member refused tether's client certificate: %v", err)
	}

	without, err := ClientConfig(poolTLS(ca.File), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err = dial(t, srv.addr, ForMember(without, srv.addr))
	if err == nil {
		err = exchange(conn, "mtls")
	}
	if err == nil {
		t.Fatal("the member accepted a client without certificate (test is broken)")
	}
}

func TestForMemberResumesPerMember(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "member-ca"})
	srv := member(t, ca, nil)
	base, err := ClientConfig(poolTLS(ca.File), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	one, two := ForMember(base, srv.addr), ForMember(base, srv.addr)
	if one.ClientSessionCache == nil || one.ClientSessionCache == two.ClientSessionCache || one.ClientSessionCache == base.ClientSessionCache {
		t.Fatal("members share a session cache (or have none)")
	}
	first, err := dial(t, srv.addr, one)
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(first, "ticket"); err != nil {
		t.Fatal(err)
	}
	second, err := dial(t, srv.addr, one)
	if err != nil {
		t.Fatal(err)
	}
	if !second.ConnectionState().DidResume {
		t.Fatal("the second conn to the member did not resume")
	}

	off := poolTLS(ca.File)
	off.SessionResumption = false
	noCache, err := ClientConfig(off, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ForMember(noCache, srv.addr).ClientSessionCache != nil {
		t.Fatal("session_resumption = false still caches sessions")
	}
}

func TestClientConfigNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		c    config.PoolTLS
		want string
	}{
		{"missing ca", config.PoolTLS{CA: dir + "/ca.pem"}, `ca "` + dir + `/ca.pem"`},
		{"missing cert", config.PoolTLS{Cert: dir + "/c.crt", Key: dir + "/c.key"}, `cert "` + dir + `/c.crt"`},
		{"cert without key", config.PoolTLS{Cert: dir + "/c.crt"}, "set both or neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClientConfig(tc.c, nil, nil)
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
