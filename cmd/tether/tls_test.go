package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
// The real binary reloads its certificate files on SIGHUP: the next
// handshake gets the new certificate, a TLS connection opened before keeps
// relaying, and the process keeps running.
func TestBinaryReloadsCertificatesOnSIGHUP(t *testing.T) {
	ca := testpki.New(t)
	first := ca.Issue(t, "site", "site.test", testpki.Options{})

	member := socktest.Start(t, socktest.Echo)
	listen := socktest.FreeAddr(t)
	cfg := fmt.Sprintf(`
[global]
shutdown_timeout = "1s"
[pool.p]
members = [ { address = %q } ]
[[virtual_server]]
name = "tls"
listen = %q
pool = "p"
[virtual_server.tls]
certificates = [ { cert = %q, key = %q } ]
watch_interval = "0s"
`, member.Addr(), listen, first.CertFile, first.KeyFile)
	proc := startBinary(t, writeConfig(t, cfg))
	stderr := proc.stderr

	dial := func() *tls.Conn {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := tls.Dial("tcp", listen, ca.ClientConfig("site.test"))
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("no TLS handshake with tether: %v\n%s", err, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	echoes := func(c *tls.Conn, msg string) {
		t.Helper()
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q, %v", got, err)
		}
	}
	old := dial()
	defer old.Close()
	echoes(old, "before")
	if s := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); s != first.Serial {
		t.Fatalf("serial %d, want %d", s, first.Serial)
	}

	second := ca.Issue(t, "site", "site.test", testpki.Options{RSA: true}) // the same files, rewritten
	proc.signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "config reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged after SIGHUP:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := dial()
	defer c.Close()
	if s := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); s != second.Serial {
		t.Fatalf("after SIGHUP a new handshake got serial %d, want %d", s, second.Serial)
	}
	echoes(c, "new")
	echoes(old, "after") // the conn from before the reload still relays
}
