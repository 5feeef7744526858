package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// servedSerial is the serial of the certificate a new handshake for name
// gets.
func servedSerial(t *testing.T, addr, name string, roots *x509.CertPool) string {
	t.Helper()
	conn, err := dial(t, addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestReloadServesNewCertificateAndKeepsOpenConns(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "reload-ca"})
	la := ca.Issue(t, "a", "a.tether.test", testpki.Options{})
	a, oldLeaf := files(la), la.Pair.Leaf
	b := files(ca.Issue(t, "b", "b.tether.test", testpki.Options{RSA: true}))
	m, _ := newManager(t, staticConfig(a, b))
	srv := serveTLS(t, m.TLSConfig(), echo)

	before, err := dial(t, srv.addr, &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(before, "before"); err != nil {
		t.Fatal(err)
	}

	newLeaf := ca.Issue(t, "a", "a.tether.test", testpki.Options{}).Pair.Leaf // new key, new serial
	if err := m.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := servedSerial(t, srv.addr, "a.tether.test", ca.Pool); got != newLeaf.SerialNumber.String() {
		t.Fatalf("after Reload a new handshake got serial %s, want the new %s (old %s)", got, newLeaf.SerialNumber, oldLeaf.SerialNumber)
	}
	if err := exchange(before, "still there"); err != nil {
		t.Fatalf("a conn opened before the reload: %v", err)
	}
	if got := before.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(oldLeaf.SerialNumber) != 0 {
		t.Fatalf("the old conn's certificate changed to %s", got)
	}
	// The untouched pair is still served, and only one certificate per
	// name is left in the cache.
	if got := servedSerial(t, srv.addr, "b.tether.test", ca.Pool); got == "" {
		t.Fatal("b.tether.test lost")
	}
	if n := len(m.matching("a.tether.test")); n != 1 {
		t.Fatalf("%d certificates for a.tether.test in the cache after reload, want 1", n)
	}
}

func TestReloadWithBrokenKeyKeepsOldCertificate(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "reload-ca"})
	la := ca.Issue(t, "a", "a.tether.test", testpki.Options{})
	a, oldLeaf := files(la), la.Pair.Leaf
	b := files(ca.Issue(t, "b", "b.tether.test", testpki.Options{}))
	m, _ := newManager(t, staticConfig(a, b))
	srv := serveTLS(t, m.TLSConfig(), echo)

	// a is renewed fine, b's key file is broken: nothing changes.
	ca.Issue(t, "a", "a.tether.test", testpki.Options{})
	testpki.WriteFile(t, b.Key, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	err := m.Reload()
	if err == nil {
		t.Fatal("Reload accepted a broken key")
	}
	if !strings.Contains(err.Error(), `key "`+b.Key+`"`) {
		t.Fatalf("error %q does not name the key file %s", err, b.Key)
	}
	if got := servedSerial(t, srv.addr, "a.tether.test", ca.Pool); got != oldLeaf.SerialNumber.String() {
		t.Fatalf("after a failed reload a.tether.test got serial %s, want the old %s", got, oldLeaf.SerialNumber)
	}
	if n := len(m.cache.AllMatchingCertificates("a.tether.test")); n != 1 {
		t.Fatalf("%d certificates for a.tether.test in the cache, want the old one only", n)
	}
}

func TestWatcherReloadsChangedFiles(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "watch-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.WatchInterval = 10 * time.Millisecond
	m, logs := newManager(t, c)
	srv := serveTLS(t, m.TLSConfig(), echo)
	before, err := dial(t, srv.addr, &tls.Config{ServerName: "a.tether.test", RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}

	// A broken key: warned once, the old certificate stays.
	old := servedSerial(t, srv.addr, "a.tether.test", ca.Pool)
	good, err := os.ReadFile(a.Key)
	if err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, a.Key, []byte("garbage\n"))
	socktest.WaitFor(t, 5*time.Second, "a warning about the broken key", func() bool {
		return logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("do not load").Len() > 0
	})
	if got := servedSerial(t, srv.addr, "a.tether.test", ca.Pool); got != old {
		t.Fatalf("served %s after a broken key, want the old %s", got, old)
	}
	testpki.WriteFile(t, a.Key, good) // back as it was: reloads the same certificate
	socktest.WaitFor(t, 5*time.Second, "the reload of the repaired key", func() bool {
		return logs.FilterLevelExact(zapcore.InfoLevel).FilterMessageSnippet("reloaded").Len() > 0
	})
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings, want 1 (a broken file is retried when it changes, not at every tick)", n)
	}

	// A renewed pair is picked up without a Reload call.
	newLeaf := ca.Issue(t, "a", "a.tether.test", testpki.Options{}).Pair.Leaf
	socktest.WaitFor(t, 5*time.Second, "the watcher to serve the new certificate", func() bool {
		return servedSerial(t, srv.addr, "a.tether.test", ca.Pool) == newLeaf.SerialNumber.String()
	})
	if err := exchange(before, "still there"); err != nil {
		t.Fatalf("a conn opened before the reloads: %v", err)
	}
	m.Close() // stops the watcher; goleak checks it is gone
}

// An in-place rewrite keeps the inode; size or mtime tell the change.
func TestFileStampSeesInPlaceRewrite(t *testing.T) {
	file := t.TempDir() + "/f"
	if err := os.WriteFile(file, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	s1 := stampOf(file)
	if err := os.WriteFile(file, []byte("three"), 0o600); err != nil {
		t.Fatal(err)
	}
	if stampOf(file).same(s1) {
		t.Fatal("a rewrite with another size looks unchanged")
	}
	s2 := stampOf(file)
	if err := os.Chtimes(file, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if stampOf(file).same(s2) {
		t.Fatal("a new mtime looks unchanged")
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if stampOf(file).same(s2) || !stampOf(file).same(fileStamp{}) {
		t.Fatal("a vanished file is not told apart")
	}
}
