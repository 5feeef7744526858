package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
)

// loadTimeout bounds loading the files into the cache: certmagic staples
// OCSP when a certificate names a responder, which goes to the network.
const loadTimeout = 30 * time.Second

// staticSet is the certificates from files in service, replaced whole by a
// successful load.
type staticSet struct {
	certs []staticCert
	def   int // index of the default certificate
}

type staticCert struct {
	file  config.Certificate
	hash  string           // its key in the certmagic cache
	cert  *tls.Certificate // as read (the cache's copy may carry an OCSP staple)
	names []string         // DNS names and IP addresses, lower-case
}

func (m *Manager) newStatic() error {
	m.magic = certmagic.New(m.cache, certmagic.Config{Logger: m.logger.Named("certmagic"), OCSP: m.ocspConfig()})
	m.conf.GetCertificate = m.getStatic
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if err := m.loadFilesLocked(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// Reload re-reads every certificate/key file pair, all or nothing: when one
// fails, the certificates in service stay and the error names the file and
// the reason. New handshakes get the new certificates at once; established
// connections are not touched. Reload does not log (the caller does; the
// watcher logs its own reloads). With ACME it does nothing.
func (m *Manager) Reload() error {
	if m.static.Load() == nil {
		return nil
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if err := m.loadFilesLocked(); err != nil {
		return fmt.Errorf("certs: reload: %w", err)
	}
	return nil
}

// loadFilesLocked reads every pair and, when all are good, puts them in
// service. The new certificates go into the cache with
// CacheUnmanagedCertificatePEMBytes, then the old ones are removed (the
// ...AsReplacement variant has been seen to deadlock).
func (m *Manager) loadFilesLocked() error {
	files := m.c.Certificates
	stamps := make([]fileStamp, 0, 2*len(files))
	for _, f := range files {
		stamps = append(stamps, stampOf(f.Cert), stampOf(f.Key))
	}
	// The watcher compares with what this attempt saw, good or not: a
	// broken file is retried when it changes again, not at every tick.
	m.seen = stamps

	pairs := make([]keyPair, len(files))
	for i, f := range files {
		kp, err := readKeyPair(f.Cert, f.Key)
		if err != nil {
			return err
		}
		pairs[i] = kp
	}

	old := m.static.Load()
	inOld := map[string]bool{}
	if old != nil {
		for _, sc := range old.certs {
			inOld[sc.hash] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	next := &staticSet{def: -1}
	var added []string
	for i, f := range files {
		kp := pairs[i]
		hash, err := m.magic.CacheUnmanagedCertificatePEMBytes(ctx, kp.certPEM, kp.keyPEM, nil)
		if err != nil {
			m.cache.Remove(added)
			return fmt.Errorf("cert %q: %w", f.Cert, err)
		}
		if !inOld[hash] {
			added = append(added, hash)
		}
		cert := kp.cert
		next.certs = append(next.certs, staticCert{file: f, hash: hash, cert: &cert, names: certNames(&cert)})
		if f.Default && next.def < 0 {
			next.def = i
		}
	}
	if next.def < 0 {
		next.def = 0
	}
	m.static.Store(next)
	if old != nil {
		keep := map[string]bool{}
		for _, sc := range next.certs {
			keep[sc.hash] = true
		}
		var gone []string
		for _, sc := range old.certs {
			if !keep[sc.hash] {
				gone = append(gone, sc.hash)
			}
		}
		m.cache.Remove(gone)
	}
	return nil
}

// getStatic is GetCertificate with files: the certificate for the SNI name
// (exact, then a wildcard one label deep), else the default one.
func (m *Manager) getStatic(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := m.static.Load()
	if choices := m.lookup(normalizedName(hello.ServerName)); len(choices) > 0 {
		c, err := certmagic.DefaultCertificateSelector(hello, choices)
		if err == nil {
			return &c.Certificate, nil
		}
	}
	def := set.certs[set.def]
	if len(def.names) > 0 {
		// The cache's copy, for its OCSP staple.
		for _, c := range m.matching(def.names[0]) {
			if c.Hash() == def.hash {
				return &c.Certificate, nil
			}
		}
	}
	return def.cert, nil
}

// certNames lists the DNS names and IP addresses of a certificate.
func certNames(c *tls.Certificate) []string {
	var names []string
	for _, n := range c.Leaf.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	for _, ip := range c.Leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// watchFiles reloads the files when one of them changed (identity, size or
// mtime), polling every interval until ctx is done.
func (m *Manager) watchFiles(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.reloadMu.Lock()
		changed := m.filesChangedLocked()
		var err error
		if changed {
			err = m.loadFilesLocked()
		}
		m.reloadMu.Unlock()
		switch {
		case !changed:
		case err != nil:
			m.logger.Warn("certificate files changed but do not load; the old certificates stay in service", zap.Error(err))
		default:
			for _, ci := range m.Certificates() {
				m.logger.Info("certificate files changed: reloaded", zap.String("cert", ci.Source),
					zap.Strings("names", ci.Names), zap.Time("not_after", ci.NotAfter))
			}
		}
	}
}

func (m *Manager) filesChangedLocked() bool {
	i := 0
	for _, f := range m.c.Certificates {
		for _, name := range []string{f.Cert, f.Key} {
			if !stampOf(name).same(m.seen[i]) {
				return true
			}
			i++
		}
	}
	return false
}
