// Package testpki makes throwaway certificate authorities and leaf
// certificates for tests: a CA per test, leaves (ECDSA P-256 or RSA 2048,
// server or client, any validity window, several names) written as PEM
// files, atomically, into the test's temp dir or a directory of its
// choosing. It is the one place tests make certificates.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CA is a self-signed test CA.
type CA struct {
	Dir  string            // where its files go (a t.TempDir unless CAOptions.Dir)
	Cert *x509.Certificate // the CA certificate
	Pool *x509.CertPool    // holds Cert only
	File string            // Cert as PEM (Dir/ca.pem), for ca / client_ca settings

	key    crypto.Signer
	mu     sync.Mutex
	serial int64
}

// CAOptions shape a CA. The zero value is what New makes.
type CAOptions struct {
	Name string // subject common name; "" = "tether test CA"
	Dir  string // where ca.pem and the leaves go, made if missing; "" = a new t.TempDir
}

// New makes an ECDSA P-256 CA named "tether test CA", valid from an hour
// ago for a day, in a new t.TempDir.
func New(t testing.TB) *CA {
	t.Helper()
	return NewCA(t, CAOptions{})
}

// NewCA makes an ECDSA P-256 CA valid from an hour ago for a day, as o says.
func NewCA(t testing.TB, o CAOptions) *CA {
	t.Helper()
	if o.Name == "" {
		o.Name = "tether test CA"
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: o.Name},
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
	ca := &CA{Dir: o.Dir, Cert: cert, Pool: x509.NewCertPool(), key: key, serial: 1}
	ca.Pool.AddCert(cert)
	ca.File = filepath.Join(ca.Dir, "ca.pem")
	WritePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// Signer is the CA's private key, for tests that sign as the CA (an OCSP
// responder).
func (ca *CA) Signer() crypto.Signer { return ca.key }

// Leaf is an issued certificate.
type Leaf struct {
	CertFile, KeyFile string
	Serial            int64
	Pair              tls.Certificate // loaded from the files; Pair.Leaf is the parsed leaf
}

// Options shape a leaf. The zero value is an ECDSA P-256 server
// certificate valid from an hour ago for a day.
type Options struct {
	RSA       bool      // RSA 2048 instead of ECDSA P-256
	Client    bool      // client authentication instead of server
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in a day
	Names     []string  // more DNS names or IP addresses beside the first
	Chain     bool      // the cert file holds the CA certificate after the leaf, as a deployed chain does
	// OCSPServer is written into the leaf's Authority Information Access
	// as its OCSP responder URL(s) (what stapling asks).
	OCSPServer []string
}

// Issue writes a leaf for name (a DNS name or an IP address; "" = none)
// and o.Names to Dir/base.pem and Dir/base.key, replacing files of that
// name atomically (written aside, then renamed: a watcher never reads half
// a file). The leaf's common name is name; its serial is the CA's next
// one, so a leaf issued again under the same base is told apart.
func (ca *CA) Issue(t testing.TB, base, name string, o Options) Leaf {
	t.Helper()
	var key crypto.Signer
	var err error
	if o.RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	ca.mu.Lock()
	ca.serial++
	serial := ca.serial
	ca.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		OCSPServer:   o.OCSPServer,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if o.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range append([]string{name}, o.Names...) {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := Leaf{CertFile: filepath.Join(ca.Dir, base+".pem"), KeyFile: filepath.Join(ca.Dir, base+".key"), Serial: serial}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if o.Chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...)
	}
	WriteFile(t, l.CertFile, certPEM)
	WritePEM(t, l.KeyFile, "PRIVATE KEY", kder)
	l.Pair, err = tls.LoadX509KeyPair(l.CertFile, l.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ClientConfig trusts the CA, sends sni and offers http/1.1.
func (ca *CA) ClientConfig(sni string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: sni, NextProtos: []string{"http/1.1"}}
}

// WritePEM writes one PEM block to path, atomically (see WriteFile).
func WritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	WriteFile(t, path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// WriteFile replaces path with b atomically (path.tmp written, then renamed
// over it), making its directory if missing: a reader or a file watcher sees
// the old content or the new, never half. Tests use it to break or repair a
// certificate or key file in place.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
