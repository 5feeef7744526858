package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Client certificate policies of a TLS virtual server.
const (
	ClientAuthNone    = "none"    // no client certificate asked for
	ClientAuthRequest = "request" // asked for; verified against ClientCA when sent
	ClientAuthRequire = "require" // required and verified against ClientCA
)

// ACME challenge types tether can answer.
const (
	ChallengeTLSALPN = "tls-alpn-01" // answered on the virtual server's own TLS listener
	ChallengeHTTP    = "http-01"     // answered by a listener certmagic opens on ACME.HTTPPort
)

// TLS is a virtual server's TLS termination (F5's client SSL profile):
// [virtual_server.tls]. Exactly one of Certificates and ACME is set. Every
// path is absolute once loaded (relative ones are taken from the config
// file's directory).
type TLS struct {
	// Certificates are served by SNI name; a client without SNI, or with a
	// name none matches, gets Default (the first one unless one sets
	// default = true). Once loaded, exactly one has Default set.
	Certificates []Certificate `toml:"certificates,omitempty"`
	// ACME obtains and renews certificates from an ACME CA (certmagic).
	ACME *ACME `toml:"acme,omitempty"`
	// Profile is "intermediate" (default: TLS 1.2 and 1.3, AEAD suites
	// only) or "modern" (TLS 1.3 only), after Mozilla's guidelines.
	Profile string `toml:"profile"`
	// MinVersion is "1.2" or "1.3" (default "1.2", "1.3" with profile
	// modern); MinVersionID is it as a crypto/tls constant.
	MinVersion   string `toml:"min_version"`
	MinVersionID uint16 `toml:"-"`
	// CipherSuites are the TLS 1.2 suites by IANA name (default
	// DefaultCipherSuites); only ECDHE with AES-GCM or ChaCha20-Poly1305 is
	// accepted. nil when MinVersion is 1.3: TLS 1.3 suites are Go's.
	// CipherSuiteIDs is them as crypto/tls IDs (nil = Go's defaults; a
	// loaded config always sets it when TLS 1.2 is spoken).
	CipherSuites   []string `toml:"cipher_suites,omitempty"`
	CipherSuiteIDs []uint16 `toml:"-"`
	// Curves are the key exchange groups (default DefaultCurves), in
	// canonical names; CurveIDs is them for crypto/tls (nil = Go's
	// defaults). Go picks among them in its own order.
	Curves   []string      `toml:"curves"`
	CurveIDs []tls.CurveID `toml:"-"`
	// ALPN protocols offered, in preference order. Default ["http/1.1"] in
	// http mode, none in tcp mode. Only "http/1.1" makes sense in http mode.
	ALPN []string `toml:"alpn"`
	// ClientAuth is none (default) | request | require; ClientCA (a PEM
	// bundle) verifies client certificates and is required unless none.
	ClientAuth string `toml:"client_auth"`
	ClientCA   string `toml:"client_ca,omitempty"`
	// SessionTickets enables TLS session resumption by tickets (default
	// true); the ticket keys rotate every TicketKeyRotation (default 12h;
	// a key stays valid for resumption for 2 rotations).
	SessionTickets    bool          `toml:"session_tickets"`
	TicketKeyRotation time.Duration `toml:"ticket_key_rotation"`
	// HandshakeTimeout bounds a client's whole TLS handshake (default 10 s).
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// WatchInterval is how often certificate files are checked for changes
	// (mtime, size); a change reloads them as SIGHUP does. Default 5 s;
	// 0 = only on SIGHUP.
	WatchInterval time.Duration `toml:"watch_interval"`
	// OCSPStapling staples the CA's OCSP response to the certificate when
	// its Authority Information Access names a responder (certmagic does
	// it: fetched at load, refreshed by the cache's maintenance, kept only
	// when the status is Good). Default true; false sends no staple and
	// never contacts the responder.
	OCSPStapling bool `toml:"ocsp_stapling"`
	// HSTS adds a Strict-Transport-Security header to every response in
	// http mode; nil (no [virtual_server.tls.hsts] table) = off.
	HSTS *HSTS `toml:"hsts,omitempty"`
}

// HSTS is [virtual_server.tls.hsts]: the Strict-Transport-Security header
// (RFC 6797) tether sets on every response of an http-mode TLS virtual
// server, its own error responses included. A member's own
// Strict-Transport-Security field is replaced, not kept beside it: a
// browser reads only the first one (RFC 6797 8.1), so a second would make
// this config silently lose or win by field order.
type HSTS struct {
	// MaxAge is how long a browser keeps the host as HTTPS-only, sent as
	// whole seconds. Default 730 days (63072000 s, Mozilla's and
	// hstspreload.org's recommendation); 0 tells browsers to forget the
	// host (RFC 6797 6.1.1), the way to back HSTS out.
	MaxAge time.Duration `toml:"max_age"`
	// IncludeSubdomains adds includeSubDomains: every subdomain is
	// HTTPS-only too. Default false.
	IncludeSubdomains bool `toml:"include_subdomains"`
	// Preload adds preload: consent to browsers' built-in HSTS lists
	// (hstspreload.org), which need max_age >= 1 year and
	// include_subdomains. Default false.
	Preload bool `toml:"preload"`
}

// DefaultHSTSMaxAge is max_age when the hsts table leaves it out.
const DefaultHSTSMaxAge = 730 * 24 * time.Hour

// HSTSPreloadMinAge is the shortest max_age hstspreload.org accepts.
const HSTSPreloadMinAge = 365 * 24 * time.Hour

// HSTSHeader is the name of the HSTS response field.
const HSTSHeader = "Strict-Transport-Security"

// Value is the header's value: "max-age=N" with N whole seconds, then the
// includeSubDomains and preload directives when set.
func (h HSTS) Value() string {
	s := "max-age=" + strconv.FormatInt(int64(h.MaxAge/time.Second), 10)
	if h.IncludeSubdomains {
		s += "; includeSubDomains"
	}
	if h.Preload {
		s += "; preload"
	}
	return s
}

// Certificate is one certificate/key PEM file pair.
type Certificate struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// Default marks the certificate for clients without a matching SNI
	// name; at most one may set it.
	Default bool `toml:"default,omitempty"`
}

// ACME configures certificates from an ACME CA (certmagic).
type ACME struct {
	Email string `toml:"email"`
	// CA is the directory URL. Default Let's Encrypt production.
	CA string `toml:"ca"`
	// Domains are obtained at start (and renewed by certmagic).
	Domains []string `toml:"domains"`
	// Storage is where certmagic keeps accounts, keys and certificates.
	// Default: certmagic's default ($XDG_DATA_HOME/certmagic).
	Storage string `toml:"storage"`
	// CARoot is a PEM bundle trusted for the CA's own HTTPS endpoint (a
	// private or test CA); "" = system roots.
	CARoot string `toml:"ca_root,omitempty"`
	// Challenges tried, in order: tls-alpn-01 (default, answered on the
	// virtual server's listener, which the CA must reach on port 443 or
	// on TLSALPNPort) and/or http-01.
	Challenges []string `toml:"challenges"`
	// HTTPPort is where certmagic listens for http-01 (default 80);
	// TLSALPNPort is the port the CA dials for tls-alpn-01 (default 443).
	// Both matter only toward test CAs, which dial other ports.
	HTTPPort    int `toml:"http_port"`
	TLSALPNPort int `toml:"tls_alpn_port"`
	// OnDemand obtains a certificate at the first handshake for a name in
	// OnDemandAllow (exact names or "*.example.com" patterns); off by
	// default, and it needs a non-empty allow-list.
	OnDemand      bool     `toml:"on_demand"`
	OnDemandAllow []string `toml:"on_demand_allow,omitempty"`
	// RenewInterval is how often the managed certificates are checked for
	// renewal (default 10m, as certmagic and Caddy's renew_interval).
	// RenewalWindowRatio is the share of a certificate's lifetime left
	// when it is renewed (default 1/3), unless the CA's ACME Renewal
	// Information (ARI) picks an earlier time.
	RenewInterval      time.Duration `toml:"renew_interval"`
	RenewalWindowRatio float64       `toml:"renewal_window_ratio"`
}

// PoolTLS is TLS toward a pool's members (F5's server SSL profile):
// [pool.NAME.tls].
type PoolTLS struct {
	// ServerName is sent as SNI and verified against the member's
	// certificate; "" = the member address's host.
	ServerName string `toml:"server_name"`
	// CA is a PEM bundle of roots for the members' certificates; "" =
	// system roots.
	CA string `toml:"ca,omitempty"`
	// InsecureSkipVerify accepts any member certificate (off; tether warns
	// loudly when on).
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// Cert and Key: a client certificate for members that require one.
	Cert string `toml:"cert,omitempty"`
	Key  string `toml:"key,omitempty"`
	// Profile, MinVersion, CipherSuites and Curves: as in TLS, toward the
	// members (the members' key type is not known before a handshake, so
	// cipher_suites is not checked against it).
	Profile        string        `toml:"profile"`
	MinVersion     string        `toml:"min_version"`
	MinVersionID   uint16        `toml:"-"`
	CipherSuites   []string      `toml:"cipher_suites,omitempty"`
	CipherSuiteIDs []uint16      `toml:"-"`
	Curves         []string      `toml:"curves"`
	CurveIDs       []tls.CurveID `toml:"-"`
	// ALPN offered to members; default ["http/1.1"] when an http-mode
	// virtual server uses the pool, none otherwise.
	ALPN []string `toml:"alpn"`
	// HandshakeTimeout bounds the TLS handshake with a member, after the
	// TCP connect (default 5 s).
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// SessionResumption keeps TLS sessions per member for resumed
	// handshakes on new conns (default true).
	SessionResumption bool `toml:"session_resumption"`
}

// Loading: raw tables (load.go) to the types above, with file checks done at
// load time so that `tether check` and a reload refuse a bad certificate and
// name it.

// tlsVersions are the values of min_version.
var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// alpnHTTP1 is the only protocol http mode speaks.
const alpnHTTP1 = "http/1.1"

// buildTLS resolves a virtual server's [virtual_server.tls]; path is
// `virtual_server "NAME": tls`.
func buildTLS(v *validator, path, dir, mode string, rt rawTLS) *TLS {
	t := DefaultTLS(mode)
	tc := resolveTLSCrypto(v, path, rt.Profile, rt.MinVersion, rt.CipherSuites, rt.Curves)
	t.Profile, t.MinVersion, t.MinVersionID = tc.profile, tc.minVersion, tc.minVersionID
	t.CipherSuites, t.CipherSuiteIDs, t.Curves, t.CurveIDs = tc.suites, tc.suiteIDs, tc.curves, tc.curveIDs
	if rt.ALPN != nil {
		t.ALPN = *rt.ALPN
	}
	t.ClientAuth = strOr(rt.ClientAuth, t.ClientAuth)
	t.ClientCA = filePath(dir, strOr(rt.ClientCA, ""))
	setBool(&t.SessionTickets, rt.SessionTickets)
	setDur(&t.TicketKeyRotation, rt.TicketKeyRotation)
	setDur(&t.HandshakeTimeout, rt.HandshakeTimeout)
	setDur(&t.WatchInterval, rt.WatchInterval)
	setBool(&t.OCSPStapling, rt.OCSPStapling)
	if rt.HSTS != nil {
		t.HSTS = buildHSTS(v, path+": hsts", mode, *rt.HSTS)
	}

	now := time.Now()
	switch {
	case len(rt.Certificates) > 0 && rt.ACME != nil:
		v.add(path, "", "certificates and acme are both set; use one of them")
	case len(rt.Certificates) == 0 && rt.ACME == nil:
		v.add(path, "", "one of certificates or acme is required")
	}
	defaultAt := 0
	leaves := make([]*x509.Certificate, len(rt.Certificates))
	for i, rc := range rt.Certificates {
		cpath := fmt.Sprintf("%s: certificate %d", path, i+1)
		v.under(cpath, path, "certificates", strconv.Itoa(i))
		c := Certificate{
			Cert:    filePath(dir, strOr(rc.Cert, "")),
			Key:     filePath(dir, strOr(rc.Key, "")),
			Default: boolOr(rc.Default, false),
		}
		if c.Default {
			if defaultAt > 0 {
				v.add(cpath, "default", fmt.Sprintf("only one certificate may be the default (certificate %d is)", defaultAt))
			} else {
				defaultAt = i + 1
			}
		}
		if c.Cert == "" {
			v.add(cpath, "cert", "is required")
		}
		if c.Key == "" {
			v.add(cpath, "key", "is required")
		}
		if c.Cert != "" && c.Key != "" {
			leaves[i] = checkKeyPair(v, cpath, c.Cert, c.Key, true, now)
		}
		t.Certificates = append(t.Certificates, c)
	}
	if defaultAt == 0 && len(t.Certificates) > 0 {
		t.Certificates[0].Default = true // the documented fallback, made explicit
	}
	if rt.ACME != nil {
		t.ACME = buildACME(v, path+": acme", dir, *rt.ACME)
	}
	if rt.CipherSuites != nil {
		checkSuitesServe(v, path, t.CipherSuites, t.Certificates, leaves, t.ACME != nil)
	}
	checkALPN(v, path, t.ALPN, mode == ModeHTTP)
	v.oneOf(path+": client_auth", t.ClientAuth, ClientAuthNone, ClientAuthRequest, ClientAuthRequire)
	switch {
	case t.ClientAuth == ClientAuthNone && t.ClientCA != "":
		v.add(path, "client_ca", `is set but client_auth is "none", so no client certificate is asked for (set client_auth = "request" or "require")`)
	case t.ClientAuth != ClientAuthNone && t.ClientCA == "":
		v.add(path, "client_ca", fmt.Sprintf("is required with client_auth = %q (the CA bundle that verifies client certificates)", t.ClientAuth))
	}
	if t.ClientCA != "" {
		checkCAFile(v, path, "client_ca", t.ClientCA)
	}
	if t.TicketKeyRotation <= 0 {
		v.add(path, "ticket_key_rotation", "must be > 0")
	}
	if t.HandshakeTimeout <= 0 {
		v.add(path, "handshake_timeout", "must be > 0")
	}
	if t.WatchInterval < 0 {
		v.add(path, "watch_interval", "must be >= 0 (0 = reload certificate files on SIGHUP only)")
	}
	return &t
}

// buildHSTS resolves [virtual_server.tls.hsts]; path is
// `virtual_server "NAME": tls: hsts`. The table sits under tls, so a
// virtual server without TLS cannot have one (browsers ignore the header
// over plain HTTP: RFC 6797 8.1).
func buildHSTS(v *validator, path, mode string, rh rawHSTS) *HSTS {
	h := HSTS{MaxAge: DefaultHSTSMaxAge}
	setDur(&h.MaxAge, rh.MaxAge)
	h.IncludeSubdomains = boolOr(rh.IncludeSubdomains, false)
	h.Preload = boolOr(rh.Preload, false)
	if mode != ModeHTTP {
		v.add(path, "", `applies to mode = "http" only: in tcp mode tether does not see the responses`)
	}
	switch {
	case h.MaxAge < 0:
		v.add(path, "max_age", "must be >= 0 (0 tells browsers to forget the host)")
	case h.MaxAge%time.Second != 0:
		v.add(path, fmt.Sprintf("max_age %q", h.MaxAge), "must be whole seconds (the header carries seconds)")
	}
	// The preload list refuses a header without these, and drops a listed
	// domain whose header stops meeting them: preload with either missing
	// is a contradiction, never what was meant.
	if h.Preload {
		if h.MaxAge < HSTSPreloadMinAge {
			v.add(path, "preload", fmt.Sprintf("needs max_age of at least 1 year (31536000 s; is %d s): the preload list refuses a shorter one", int64(h.MaxAge/time.Second)))
		}
		if !h.IncludeSubdomains {
			v.add(path, "preload", "needs include_subdomains = true: the preload list refuses a header without includeSubDomains")
		}
	}
	return &h
}

// buildACME resolves the acme table; path is `virtual_server "NAME": tls: acme`.
func buildACME(v *validator, path, dir string, ra rawACME) *ACME {
	a := DefaultACME()
	a.Email = strOr(ra.Email, "")
	a.CA = strOr(ra.CA, a.CA)
	a.Domains = ra.Domains
	a.Storage = filePath(dir, strOr(ra.Storage, ""))
	a.CARoot = filePath(dir, strOr(ra.CARoot, ""))
	if ra.Challenges != nil {
		a.Challenges = *ra.Challenges
	}
	setInt(&a.HTTPPort, ra.HTTPPort)
	setInt(&a.TLSALPNPort, ra.TLSALPNPort)
	a.OnDemand = boolOr(ra.OnDemand, false)
	a.OnDemandAllow = ra.OnDemandAllow
	setDur(&a.RenewInterval, ra.RenewInterval)
	a.RenewalWindowRatio = floatOr(ra.RenewalWindowRatio, a.RenewalWindowRatio)

	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t\r\n<>")) {
		v.add(path, fmt.Sprintf("email %q", a.Email), "is not an email address")
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.add(path, fmt.Sprintf("ca %q", a.CA), "must be the https:// URL of an ACME directory")
	}
	if len(a.Domains) == 0 && !a.OnDemand {
		v.add(path, "domains", "at least one domain is required (or on_demand = true with on_demand_allow)")
	}
	seen := map[string]bool{}
	for _, d := range a.Domains {
		key := fmt.Sprintf("domains %q", d)
		switch {
		case strings.HasPrefix(d, "*.") && isHostName(d[2:]):
			v.add(path, key, "a wildcard name needs the dns-01 challenge, which tether does not answer; list the names, or use on_demand with a \"*.\" pattern in on_demand_allow")
		case !isHostName(d) && !isIP(d):
			v.add(path, key, "is not a host name")
		case seen[d]:
			v.add(path, key, "is listed twice")
		}
		seen[d] = true
	}
	switch {
	case a.OnDemand && len(a.OnDemandAllow) == 0:
		v.add(path, "on_demand_allow", "is required with on_demand = true (exact names or \"*.example.com\" patterns): without it anyone could make tether obtain certificates for any name")
	case !a.OnDemand && len(a.OnDemandAllow) > 0:
		v.add(path, "on_demand_allow", "applies with on_demand = true only")
	}
	for _, pat := range a.OnDemandAllow {
		name := strings.TrimPrefix(pat, "*.")
		if !isHostName(name) && !(name == pat && isIP(pat)) {
			v.add(path, fmt.Sprintf("on_demand_allow %q", pat), "want an exact name or a pattern like \"*.example.com\"")
		}
	}
	if len(a.Challenges) == 0 {
		v.add(path, "challenges", "at least one is required: tls-alpn-01 | http-01")
	}
	seenCh := map[string]bool{}
	for _, c := range a.Challenges {
		switch {
		case c != ChallengeTLSALPN && c != ChallengeHTTP:
			v.add(path, "challenges", fmt.Sprintf("%q is not one of tls-alpn-01 | http-01", c))
		case seenCh[c]:
			v.add(path, "challenges", fmt.Sprintf("%q is listed twice", c))
		}
		seenCh[c] = true
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"http_port", a.HTTPPort}, {"tls_alpn_port", a.TLSALPNPort}} {
		if p.port < 1 || p.port > 65535 {
			v.add(path, p.key, "must be between 1 and 65535")
		}
	}
	if a.RenewInterval < time.Second || a.RenewInterval > 24*time.Hour {
		v.add(path, "renew_interval", "must be between 1s and 24h")
	}
	if !(a.RenewalWindowRatio > 0 && a.RenewalWindowRatio < 1) {
		v.add(path, fmt.Sprintf("renewal_window_ratio %v", a.RenewalWindowRatio), "must be above 0 and below 1 (the share of the lifetime left at renewal)")
	}
	if a.Storage != "" {
		checkStorageDir(v, path, a.Storage)
	}
	if a.CARoot != "" {
		checkCAFile(v, path, "ca_root", a.CARoot)
	}
	return &a
}

// buildPoolTLS resolves [pool.NAME.tls]; path is `pool "NAME": tls`.
func buildPoolTLS(v *validator, path, dir string, rt rawPoolTLS) *PoolTLS {
	t := DefaultPoolTLS()
	t.ServerName = strOr(rt.ServerName, "")
	t.CA = filePath(dir, strOr(rt.CA, ""))
	t.InsecureSkipVerify = boolOr(rt.InsecureSkipVerify, false)
	t.Cert = filePath(dir, strOr(rt.Cert, ""))
	t.Key = filePath(dir, strOr(rt.Key, ""))
	tc := resolveTLSCrypto(v, path, rt.Profile, rt.MinVersion, rt.CipherSuites, rt.Curves)
	t.Profile, t.MinVersion, t.MinVersionID = tc.profile, tc.minVersion, tc.minVersionID
	t.CipherSuites, t.CipherSuiteIDs, t.Curves, t.CurveIDs = tc.suites, tc.suiteIDs, tc.curves, tc.curveIDs
	if rt.ALPN != nil {
		t.ALPN = *rt.ALPN
	}
	setDur(&t.HandshakeTimeout, rt.HandshakeTimeout)
	setBool(&t.SessionResumption, rt.SessionResumption)

	if t.ServerName != "" && !isHostName(t.ServerName) && !isIP(t.ServerName) {
		v.add(path, fmt.Sprintf("server_name %q", t.ServerName), "is not a host name")
	}
	if t.CA != "" {
		checkCAFile(v, path, "ca", t.CA)
	}
	if t.InsecureSkipVerify {
		msg := "member certificates are NOT verified; anyone on the path can impersonate the members"
		if t.CA != "" {
			msg += " (ca is not used while this is on)"
		}
		v.warn(path, "insecure_skip_verify", msg)
	}
	switch {
	case t.Cert != "" && t.Key == "":
		v.add(path, "key", "is required with cert (set both or neither)")
	case t.Cert == "" && t.Key != "":
		v.add(path, "cert", "is required with key (set both or neither)")
	case t.Cert != "":
		// A client certificate is checked like a served one except for the
		// subjectAltName: members identify clients by whatever they like
		// (CN, URI, e-mail), not by a host name.
		checkKeyPair(v, path, t.Cert, t.Key, false, time.Now())
	}
	checkALPN(v, path, t.ALPN, false)
	if t.HandshakeTimeout <= 0 {
		v.add(path, "handshake_timeout", "must be > 0")
	}
	return &t
}

// filePath makes a file name from the config absolute: a relative one is
// taken from dir, or from the working directory when dir is "".
func filePath(dir, name string) string {
	switch {
	case name == "":
		return ""
	case filepath.IsAbs(name):
		return filepath.Clean(name)
	case dir != "":
		return filepath.Join(dir, name)
	}
	if abs, err := filepath.Abs(name); err == nil {
		return abs
	}
	return name
}

func checkALPN(v *validator, path string, protos []string, httpMode bool) {
	seen := map[string]bool{}
	for _, p := range protos {
		key := fmt.Sprintf("alpn %q", p)
		switch {
		case p == "" || len(p) > 255:
			v.add(path, key, "a protocol name is 1 to 255 bytes")
		case seen[p]:
			v.add(path, key, "is listed twice")
		case httpMode && p == "h2":
			v.add(path, key, "HTTP/2 is not supported: http mode speaks http/1.1 only")
		case httpMode && p != alpnHTTP1:
			v.add(path, key, "http mode speaks http/1.1 only")
		}
		seen[p] = true
	}
}

// checkKeyPair checks a certificate/key pair as crypto/tls will load it:
// both files readable, PEM that parses, the key matching the first
// certificate (the leaf), the leaf valid now, and, for a served certificate
// (server), at least one DNS name or IP address to match. A leaf expiring
// within CertExpiryWarning is a warning. It returns the leaf when the pair
// loads (nil otherwise), for checks that depend on its key type.
func checkKeyPair(v *validator, path, certFile, keyFile string, server bool, now time.Time) *x509.Certificate {
	certKey, keyKey := "cert "+quote(certFile), "key "+quote(keyFile)
	certPEM, certs, cerr := readCerts(certFile)
	if cerr != nil {
		v.add(path, certKey, cerr.Error())
	}
	keyPEM, kerr := readFile(keyFile)
	if kerr != nil {
		v.add(path, keyKey, kerr.Error())
	}
	if cerr != nil || kerr != nil {
		return nil
	}
	pairOK := true
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		pairOK = false
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		switch {
		case strings.Contains(msg, "does not match"):
			msg = "private key does not match the certificate in " + quote(certFile)
		case strings.Contains(msg, "failed to find"):
			msg = "holds no PEM private key"
		}
		v.add(path, keyKey, msg)
	}
	leaf := certs[0]
	if server && len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		v.add(path, certKey, "the certificate names no DNS name or IP address (subjectAltName); clients check those and ignore the Common Name")
	}
	switch {
	case now.After(leaf.NotAfter):
		v.add(path, certKey, "expired on "+leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		v.add(path, certKey, "is not valid yet: valid from "+leaf.NotBefore.UTC().Format("2006-01-02 15:04:05 UTC"))
	case leaf.NotAfter.Sub(now) < CertExpiryWarning:
		days := int(leaf.NotAfter.Sub(now) / (24 * time.Hour))
		v.warn(path, certKey, fmt.Sprintf("expires on %s (in %d days)", leaf.NotAfter.UTC().Format(time.DateOnly), days))
	}
	if !pairOK {
		return nil
	}
	return leaf
}

// checkCAFile checks a PEM bundle of CA certificates: readable, with at
// least one certificate, each one parsable.
func checkCAFile(v *validator, path, key, file string) {
	if _, _, err := readCerts(file); err != nil {
		v.add(path, key+" "+quote(file), err.Error())
	}
}

// checkStorageDir accepts a directory, or a name whose parent directory
// exists (certmagic creates it).
func checkStorageDir(v *validator, path, dir string) {
	key := "storage " + quote(dir)
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		v.add(path, key, "is not a directory")
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		if pst, perr := os.Stat(filepath.Dir(dir)); perr != nil || !pst.IsDir() {
			v.add(path, key, "does not exist, and neither does its parent directory to create it in")
		}
	default:
		v.add(path, key, "cannot read it: "+pathErr(err))
	}
}

// ReadCertificates reads a PEM file and parses each CERTIFICATE block in
// it; at least one must be there. Errors leave the file's name out (the
// caller names the key and the file).
func ReadCertificates(file string) ([]*x509.Certificate, error) {
	_, certs, err := readCerts(file)
	return certs, err
}

// readCerts reads a PEM file and parses each CERTIFICATE block in it.
func readCerts(file string) ([]byte, []*x509.Certificate, error) {
	b, err := readFile(file)
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d in the file does not parse: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("holds no PEM certificate")
	}
	return b, certs, nil
}

// readFile reads a file named in the config; its error leaves the name out
// (the message already carries it).
func readFile(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, errors.New("cannot read it: " + pathErr(err))
	}
	return b, nil
}

func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// isHostName reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', none empty or longer than 63 bytes.
func isHostName(s string) bool {
	if s == "" || len(s) > 253 || isIP(s) {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
