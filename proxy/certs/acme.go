package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/caddyserver/certmagic"

	"github.com/tetherproxy/tether/config"
)

// ErrNotAllowed is the on-demand refusal of a name outside on_demand_allow.
var ErrNotAllowed = errors.New("certs: name not allowed for an on-demand certificate")

func (m *Manager) newACME(a config.ACME) error {
	var roots *x509.CertPool
	if a.CARoot != "" {
		var err error
		if roots, err = readCertPool("ca_root", a.CARoot); err != nil {
			return fmt.Errorf("certs: acme: %w", err)
		}
	}
	var storage certmagic.Storage // nil: certmagic's default
	if a.Storage != "" {
		storage = &certmagic.FileStorage{Path: a.Storage}
	}
	alpn, http01 := len(a.Challenges) == 0, false // none listed: tls-alpn-01, config's default
	for _, ch := range a.Challenges {
		switch ch {
		case config.ChallengeTLSALPN:
			alpn = true
		case config.ChallengeHTTP:
			http01 = true
		default:
			return fmt.Errorf("certs: acme: challenge %q is not one of tls-alpn-01 | http-01", ch)
		}
	}
	m.domains = map[string]bool{}
	for _, d := range a.Domains {
		m.domains[normalizedName(d)] = true
	}
	for _, p := range a.OnDemandAllow {
		m.allow = append(m.allow, normalizedName(p))
	}
	m.names = map[string]struct{}{}
	// Clients without SNI, or with a name no certificate has, get the
	// first domain's certificate, as the default file does with files.
	var first string
	if len(a.Domains) > 0 {
		first = normalizedName(a.Domains[0])
	}
	newConfig := func(onDemand *certmagic.OnDemandConfig) *certmagic.Config {
		cfg := certmagic.New(m.cache, certmagic.Config{
			DefaultServerName:  first,
			FallbackServerName: first,
			OnDemand:           onDemand,
			RenewalWindowRatio: a.RenewalWindowRatio, // 0 = certmagic's default
			OnEvent:            m.onEvent,
			ShouldEmitFunc:     acmeEvents,
			Storage:            storage,
			OCSP:               m.ocspConfig(),
			Logger:             m.logger.Named("certmagic"),
		})
		iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
			CA:                      a.CA,
			Email:                   a.Email,
			Agreed:                  true, // configuring a CA is agreeing to its terms
			TrustedRoots:            roots,
			DisableHTTPChallenge:    !http01,
			DisableTLSALPNChallenge: !alpn,
			AltHTTPPort:             a.HTTPPort,
			AltTLSALPNPort:          a.TLSALPNPort,
			Logger:                  m.logger.Named("certmagic"),
		})
		cfg.Issuers = []certmagic.Issuer{iss}
		m.issuers = append(m.issuers, iss)
		return cfg
	}
	m.magic = newConfig(nil)
	serving := m.magic
	if a.OnDemand {
		m.demand = newConfig(&certmagic.OnDemandConfig{DecisionFunc: m.decide})
		serving = m.demand
	}
	m.conf.GetCertificate = serving.GetCertificate
	if alpn {
		// Only the CA's validation handshake sees acme-tls/1 offered: in
		// the main config it would make Go refuse every client whose ALPN
		// list does not overlap (with no ALPN configured, any client that
		// offers one), and it must not ask the CA for a client certificate.
		m.challenge = &tls.Config{GetCertificate: serving.GetCertificate, NextProtos: []string{acmeTLS1},
			CipherSuites: m.conf.CipherSuites, CurvePreferences: m.conf.CurvePreferences}
		m.conf.GetConfigForClient = m.configForChallenge
	}
	return nil
}

// configForChallenge picks the challenge config for a tls-alpn-01
// validation handshake (RFC 8737: ALPN acme-tls/1 alone, with SNI).
func (m *Manager) configForChallenge(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLS1 {
		return m.challenge, nil
	}
	return nil, nil
}

// SetListenAddr tells certmagic where the virtual server listens, before
// Start: certmagic then knows the tls-alpn-01 challenge is answered on that
// listener, and binds the http-01 one on the same host. Without it, it
// assumes the CA's port (tls_alpn_port, 443) is the listener's and, when
// that port is free, binds it itself (failing without the privilege), as
// behind a NAT from 443 to another port. Only ACME uses it.
func (m *Manager) SetListenAddr(addr net.Addr) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return
	}
	host := ""
	if tcp.IP != nil && !tcp.IP.IsUnspecified() {
		host = tcp.IP.String()
	}
	for _, iss := range m.issuers {
		iss.ListenHost = host
		iss.AltTLSALPNPort = tcp.Port
	}
}

// decide is the on-demand DecisionFunc: a name in Domains or matching
// OnDemandAllow (exact, or "*.example.com": exactly one label more).
// certmagic hands it normalized (lower-case, punycode).
func (m *Manager) decide(_ context.Context, name string) error {
	if m.domains[name] {
		return nil
	}
	for _, p := range m.allow {
		if matchName(name, p) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrNotAllowed, name)
}

func matchName(name, pattern string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok && strings.HasPrefix(suffix, ".") {
		i := strings.IndexByte(name, '.')
		return i > 0 && name[i:] == suffix
	}
	return name == pattern
}

// ACMEStats counts what certmagic did for a Manager with ACME: certificates
// obtained, renewed, and attempts that failed (each one retried by
// certmagic with backoff, and logged by it).
type ACMEStats struct {
	Obtained, Renewed, Failed uint64
}

// ACMEStats returns the counts so far (zero with files).
func (m *Manager) ACMEStats() ACMEStats {
	return ACMEStats{Obtained: m.obtained.Load(), Renewed: m.renewed.Load(), Failed: m.failed.Load()}
}

// acmeEvents are the certmagic events onEvent handles.
func acmeEvents(event string) bool {
	switch event {
	case "cached_managed_cert", "cert_obtained", "cert_failed":
		return true
	}
	return false
}

// onEvent records the names of the certificates certmagic caches, for
// Certificates, and counts obtained, renewed and failed certificates.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		if renewal, _ := data["renewal"].(bool); renewal {
			m.renewed.Add(1)
		} else {
			m.obtained.Add(1)
		}
		return nil
	case "cert_failed":
		m.failed.Add(1)
		return nil
	case "cached_managed_cert":
	default:
		return nil
	}
	sans, _ := data["sans"].([]string)
	m.namesMu.Lock()
	for _, n := range sans {
		m.names[n] = struct{}{}
	}
	m.namesMu.Unlock()
	return nil
}

// HTTPChallengePrefix is the path prefix of ACME http-01 validation
// requests (RFC 8555 8.3).
const HTTPChallengePrefix = "/.well-known/acme-challenge/"

// HTTPChallenge returns the key authorization answering an ACME http-01
// validation request, a GET of path with Host host, when this process has
// that challenge in progress (certmagic keeps them process-wide). A
// plain-HTTP virtual server on the challenge's port answers with it: when
// that port is taken by tether itself, certmagic's own answerer cannot
// bind it and counts on the listener there, as Caddy's HTTP servers do.
// The name must be the challenge's (no answer for another Host: DNS
// rebinding) and the path its token's.
func HTTPChallenge(host, path string) (string, bool) {
	if !strings.HasPrefix(path, HTTPChallengePrefix) {
		return "", false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	ch, ok := certmagic.GetACMEChallenge(host)
	if !ok || ch.Type != "http-01" || !strings.EqualFold(ch.Identifier.Value, host) || ch.HTTP01ResourcePath() != path {
		return "", false
	}
	return ch.KeyAuthorization, true
}
