package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tetherproxy/tether/config"
)

// keyPair is a certificate/key file pair read and checked: the PEM bytes as
// read, and the parsed certificate.
type keyPair struct {
	certPEM, keyPEM []byte
	cert            tls.Certificate // Leaf set
}

// readKeyPair reads and checks a certificate/key pair. Its errors name the
// file at fault and why.
func readKeyPair(certFile, keyFile string) (keyPair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return keyPair{}, fmt.Errorf("cert %q: %w", certFile, bare(err))
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return keyPair{}, fmt.Errorf("cert %q: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return keyPair{}, fmt.Errorf("key %q: %w", keyFile, bare(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The certificates parsed above: what fails here is the key.
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		if strings.Contains(msg, "does not match") {
			return keyPair{}, fmt.Errorf("key %q does not match cert %q: %s", keyFile, certFile, msg)
		}
		return keyPair{}, fmt.Errorf("key %q: %s", keyFile, msg)
	}
	cert.Leaf = leaf
	return keyPair{certPEM: certPEM, keyPEM: keyPEM, cert: cert}, nil
}

// parseLeaf parses the first CERTIFICATE block of a PEM bundle.
func parseLeaf(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, errNoCertificate
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// readCertPool reads a PEM bundle of CA certificates (as `tether check`
// does); what names the config key in errors ("client_ca", "ca_root", "ca").
func readCertPool(what, file string) (*x509.CertPool, error) {
	certs, err := config.ReadCertificates(file)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, file, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// bare drops the file name a *fs.PathError repeats (the message names the
// file already); errors.Is(err, fs.ErrNotExist) still holds.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

var errNoCertificate = errors.New("holds no PEM CERTIFICATE block")

// fileStamp is what the watcher compares: a file changed when its identity
// (device and inode: replaced by a rename), size or mtime did, or when it
// appeared or vanished.
type fileStamp struct {
	info    os.FileInfo // nil when Stat failed
	size    int64
	modTime time.Time
}

func stampOf(file string) fileStamp {
	fi, err := os.Stat(file)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{info: fi, size: fi.Size(), modTime: fi.ModTime()}
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return a.size == b.size && a.modTime.Equal(b.modTime) && os.SameFile(a.info, b.info)
}
