package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("certs: manager closed")

// acmeTLS1 is the ALPN protocol of the ACME tls-alpn-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// Manager holds one TLS virtual server's certificates in a certmagic cache
// of its own and builds its server *tls.Config. Build it with New, call
// Start once the virtual server's listener is up, Close when done. Its
// methods are safe for concurrent use.
type Manager struct {
	c      config.TLS
	logger *zap.Logger

	cache *certmagic.Cache
	// magic loads the files (static) or obtains and renews
	// c.ACME.Domains (ACME). demand is set with ACME on_demand: it serves
	// the handshakes and obtains allowed names at the first one.
	magic, demand *certmagic.Config
	issuers       []*certmagic.ACMEIssuer
	domains       map[string]bool // c.ACME.Domains, normalized
	allow         []string        // c.ACME.OnDemandAllow, lower-case

	conf      *tls.Config // what TLSConfig returns; ticket keys set on it
	challenge *tls.Config // ACME tls-alpn-01: for the CA's validation handshakes

	// Static certificates: the set in service, swapped whole by a load.
	reloadMu sync.Mutex // serializes loads
	static   atomic.Pointer[staticSet]
	seen     []fileStamp // the files at the last load attempt; reloadMu

	ticketMu   sync.Mutex
	ticketKeys [][32]byte // [current, previous]
	keysMade   atomic.Uint64

	namesMu sync.Mutex
	names   map[string]struct{} // ACME: names of the certificates certmagic cached

	obtained, renewed, failed atomic.Uint64 // ACME: see ACMEStats

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc // ends what Start started
	wg      sync.WaitGroup     // the watcher and the ticket key rotation
}

// CertInfo describes a certificate in service.
type CertInfo struct {
	Names    []string // DNS names and IP addresses it is valid for
	NotAfter time.Time
	Issuer   string // the issuer's distinguished name
	Source   string // the certificate file, or "acme"
}

// New builds the Manager of a virtual server's TLS from its validated
// config. It loads every certificate file (an error names the file and the
// reason) or, with ACME, prepares certmagic without contacting the CA yet.
// logger may be nil (no logs).
func New(c config.TLS, logger *zap.Logger) (*Manager, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	switch {
	case len(c.Certificates) > 0 && c.ACME != nil:
		return nil, errors.New("certs: certificates and acme are both set")
	case len(c.Certificates) == 0 && c.ACME == nil:
		return nil, errors.New("certs: neither certificates nor acme is set")
	}
	m := &Manager{c: c, logger: logger}
	m.conf = &tls.Config{
		MinVersion:             c.MinVersionID,
		CipherSuites:           slices.Clone(c.CipherSuiteIDs),
		CurvePreferences:       slices.Clone(c.CurveIDs),
		NextProtos:             slices.Clone(c.ALPN),
		SessionTicketsDisabled: !c.SessionTickets,
	}
	if err := m.setClientAuth(); err != nil {
		return nil, err
	}
	cacheOpts := certmagic.CacheOptions{
		GetConfigForCert: m.configForCert,
		Logger:           logger.Named("certmagic"),
	}
	if c.ACME != nil {
		// How often the cache's maintenance looks for certificates to
		// renew (0 = certmagic's default).
		cacheOpts.RenewCheckInterval = c.ACME.RenewInterval
	}
	m.cache = certmagic.NewCache(cacheOpts)
	var err error
	if c.ACME != nil {
		err = m.newACME(*c.ACME)
	} else {
		err = m.newStatic()
	}
	if err != nil {
		m.cache.Stop()
		return nil, err
	}
	if c.SessionTickets && c.TicketKeyRotation > 0 {
		m.rotateTicketKey()
	}
	return m, nil
}

func (m *Manager) setClientAuth() error {
	switch m.c.ClientAuth {
	case "", config.ClientAuthNone:
		m.conf.ClientAuth = tls.NoClientCert
	case config.ClientAuthRequest:
		m.conf.ClientAuth = tls.VerifyClientCertIfGiven
	case config.ClientAuthRequire:
		m.conf.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return fmt.Errorf("certs: client_auth %q is not one of none | request | require", m.c.ClientAuth)
	}
	if m.c.ClientCA == "" {
		if m.conf.ClientAuth != tls.NoClientCert {
			return fmt.Errorf("certs: client_auth %q needs client_ca", m.c.ClientAuth)
		}
		return nil
	}
	pool, err := readCertPool("client_ca", m.c.ClientCA)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	m.conf.ClientCAs = pool
	return nil
}

// ocspConfig is how certmagic staples OCSP for this virtual server's
// certificates, files and ACME alike: when a certificate's AIA names a
// responder, certmagic asks it at load (CacheUnmanagedCertificatePEMBytes,
// or when an ACME certificate is cached), staples the answer only when it
// says Good, keeps it in its storage, and refreshes it from the cache's
// maintenance (hourly, certmagic.DefaultOCSPCheckInterval) from half-way
// through its validity. A responder that fails costs the staple, never the
// certificate: certmagic logs "stapling OCSP" at warn and the handshakes
// go on without one (and it logs nothing for a certificate valid under 7
// days). HTTPProxy is set, to the environment's proxy as Go's default, only
// because that is what makes certmagic use a client with a 30 s timeout:
// with a nil one it uses http.DefaultClient, which has none, and a
// responder that accepts and never answers would hang New and Reload.
func (m *Manager) ocspConfig() certmagic.OCSPConfig {
	return certmagic.OCSPConfig{DisableStapling: !m.c.OCSPStapling, HTTPProxy: http.ProxyFromEnvironment}
}

// configForCert is the cache's GetConfigForCert: the certmagic config that
// maintains a cached certificate.
func (m *Manager) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	if m.demand == nil {
		return m.magic, nil
	}
	for _, n := range cert.Names {
		if m.domains[n] {
			return m.magic, nil
		}
	}
	return m.demand, nil
}

// Start starts the background work: with ACME, obtaining (or loading from
// storage) and then renewing c.ACME.Domains, retried by certmagic; with
// files, the watcher (every c.WatchInterval; none when 0); and the session
// ticket key rotation. Call it after the virtual server's listener is up:
// the CA's tls-alpn-01 validation is answered there. It does not wait for
// any certificate (see Ready). The work ends when ctx is done or at Close.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return ErrClosed
	case m.started:
		return errors.New("certs: manager already started")
	}
	m.started = true
	ctx, m.cancel = context.WithCancel(ctx)
	if m.c.SessionTickets && m.c.TicketKeyRotation > 0 {
		m.wg.Go(func() { m.rotateTicketKeys(ctx, m.c.TicketKeyRotation) })
	}
	if m.static.Load() != nil && m.c.WatchInterval > 0 {
		m.wg.Go(func() { m.watchFiles(ctx, m.c.WatchInterval) })
	}
	if m.c.ACME != nil && len(m.c.ACME.Domains) > 0 {
		if err := m.magic.ManageAsync(ctx, m.c.ACME.Domains); err != nil {
			return fmt.Errorf("certs: acme: %w", err)
		}
	}
	return nil
}

// Close stops the watcher, the ticket key rotation, certmagic's obtaining
// and renewing for this Manager, and the cache's maintenance, and waits for
// the goroutines it owns. certmagic's own background jobs end as soon as
// they see the cancellation (an ACME request in flight is cut). Handshakes
// still work from the certificates in the cache. Close may be called more
// than once, and without Start.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.wg.Wait()
	m.cache.Stop()
}

// TLSConfig returns the virtual server's server config. It is the same
// value on every call: serve with it directly, since the Manager rotates
// its session ticket keys in place (a Clone would keep the keys of the
// moment).
//
// The certificate is chosen by SNI: with files, the exact name, then a
// wildcard one label deep, else the default certificate (also for clients
// without SNI); with ACME, certmagic's choice (and, on demand, a
// certificate obtained during the handshake for an allowed name). A CA's
// tls-alpn-01 validation handshake (ALPN "acme-tls/1" only) gets the
// challenge certificate and ALPN acme-tls/1; other clients never see that
// protocol offered, so a client whose ALPN list does not overlap c.ALPN is
// not refused because of it when c.ALPN is empty.
//
// Also set: MinVersion from c.MinVersionID (0: Go's default), the TLS 1.2
// suites c.CipherSuiteIDs and the key exchange groups c.CurveIDs (nil:
// Go's defaults; config fills both), ALPN c.ALPN,
// client certificates per c.ClientAuth verified against c.ClientCA, and
// session tickets unless c.SessionTickets is false. Their keys are random
// and rotated every c.TicketKeyRotation (from Start) with the previous key
// kept for decryption, so a ticket resumes for up to two rotations; with
// TicketKeyRotation 0, Go rotates its own keys (daily, valid a week).
func (m *Manager) TLSConfig() *tls.Config { return m.conf }

// IsChallenge reports whether a completed handshake only answered an ACME
// tls-alpn-01 challenge: the caller closes such a conn at once.
func IsChallenge(cs tls.ConnectionState) bool { return cs.NegotiatedProtocol == acmeTLS1 }

// Ready waits until a certificate for each name (exact, or a wildcard one
// label deep) is in the cache, or ctx is done. For startup logs and tests.
func (m *Manager) Ready(ctx context.Context, names ...string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var missing []string
		for _, n := range names {
			if len(m.lookup(normalizedName(n))) == 0 {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("certs: no certificate yet for %s: %w", strings.Join(missing, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

// Certificates lists the certificates in service: with files, one per
// configured pair (in config order); with ACME, those certmagic holds.
func (m *Manager) Certificates() []CertInfo {
	if set := m.static.Load(); set != nil {
		out := make([]CertInfo, 0, len(set.certs))
		for _, sc := range set.certs {
			leaf := sc.cert.Leaf
			out = append(out, CertInfo{Names: sc.names, NotAfter: leaf.NotAfter, Issuer: leaf.Issuer.String(), Source: sc.file.Cert})
		}
		return out
	}
	m.namesMu.Lock()
	names := make([]string, 0, len(m.names)+len(m.domains))
	for n := range m.names {
		names = append(names, n)
	}
	m.namesMu.Unlock()
	for n := range m.domains {
		names = append(names, n)
	}
	seen := map[string]bool{}
	var out []CertInfo
	for _, n := range names {
		for _, c := range m.lookup(n) {
			if seen[c.Hash()] || c.Leaf == nil {
				continue
			}
			seen[c.Hash()] = true
			out = append(out, CertInfo{Names: c.Names, NotAfter: c.Leaf.NotAfter, Issuer: c.Leaf.Issuer.String(), Source: "acme"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Names[0] < out[j].Names[0] })
	return out
}

// lookup returns the cached certificates for name: those naming it exactly,
// else those for the wildcard one label up ("*.example.com" for
// "a.example.com", not for "a.b.example.com").
func (m *Manager) lookup(name string) []certmagic.Certificate {
	if name == "" {
		return nil
	}
	if cs := m.matching(name); len(cs) > 0 {
		return cs
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return m.matching("*" + name[i:])
	}
	return nil
}

// matching returns the cached certificates that list name itself.
func (m *Manager) matching(name string) []certmagic.Certificate {
	all := m.cache.AllMatchingCertificates(name) // also expands wildcards further
	out := all[:0]
	for _, c := range all {
		if slices.Contains(c.Names, name) {
			out = append(out, c)
		}
	}
	return out
}

// normalizedName is a server name as certmagic indexes it.
func normalizedName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}
