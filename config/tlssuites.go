package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// TLS profiles (profile = ...), after Mozilla's server-side TLS guidelines.
const (
	// ProfileIntermediate: TLS 1.2 and 1.3; on TLS 1.2 only ECDHE suites
	// with AES-GCM or ChaCha20-Poly1305 (DefaultCipherSuites).
	ProfileIntermediate = "intermediate"
	// ProfileModern: TLS 1.3 only.
	ProfileModern = "modern"
)

// tlsCrypto is what profile, min_version, cipher_suites and curves resolve
// to, the same way on both sides.
type tlsCrypto struct {
	profile      string
	minVersion   string
	minVersionID uint16
	suites       []string // nil when only TLS 1.3 is spoken
	suiteIDs     []uint16
	curves       []string
	curveIDs     []tls.CurveID
}

// curveNames are the key exchange groups tether accepts in curves, by
// their canonical name (the one printed back), with Go's CurveID.
var curveNames = []struct {
	name string
	id   tls.CurveID
}{
	{"X25519MLKEM768", tls.X25519MLKEM768},
	{"SecP256r1MLKEM768", tls.SecP256r1MLKEM768},
	{"SecP384r1MLKEM1024", tls.SecP384r1MLKEM1024},
	{"X25519", tls.X25519},
	{"P-256", tls.CurveP256},
	{"P-384", tls.CurveP384},
	{"P-521", tls.CurveP521},
}

// curveAliases are other spellings of the same groups (OpenSSL's, Go's
// constant names), matched without regard to case.
var curveAliases = map[string]string{
	"secp256r1": "P-256", "prime256v1": "P-256", "curvep256": "P-256", "p256": "P-256",
	"secp384r1": "P-384", "curvep384": "P-384", "p384": "P-384",
	"secp521r1": "P-521", "curvep521": "P-521", "p521": "P-521",
}

// opensslSuites maps OpenSSL's names of the suites tether accepts to the
// IANA names, for a "did you mean" hint.
var opensslSuites = map[string]string{
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// suiteByName finds a suite Go implements (secure or not) by IANA name.
func suiteByName(name string) *tls.CipherSuite {
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, s := range list {
			if s.Name == name {
				return s
			}
		}
	}
	return nil
}

// suiteRefusal says why tether refuses a suite Go knows, or "" when it is
// one of the six ECDHE + AEAD TLS 1.2 suites.
func suiteRefusal(s *tls.CipherSuite) string {
	switch {
	case len(s.SupportedVersions) == 1 && s.SupportedVersions[0] == tls.VersionTLS13:
		return "is a TLS 1.3 suite: Go chooses the TLS 1.3 suites itself (AES-GCM and ChaCha20-Poly1305) and they cannot be configured; list TLS 1.2 suites only"
	case s.Insecure && (strings.Contains(s.Name, "_RC4_") || strings.Contains(s.Name, "_3DES_")):
		return "is insecure (Go lists it in tls.InsecureCipherSuites: RC4 and 3DES are broken)"
	case !strings.HasPrefix(s.Name, "TLS_ECDHE_"):
		return "uses RSA key exchange, refused: no forward secrecy (a stolen key decrypts recorded traffic) and the ROBOT class of attacks"
	case s.Insecure:
		return "is insecure (Go lists it in tls.InsecureCipherSuites)"
	case strings.Contains(s.Name, "_CBC_"):
		return "is a CBC suite, refused: MAC-then-encrypt padding oracles (LUCKY13), reported as obsolete by testssl.sh; Mozilla's intermediate profile offers AEAD suites only"
	}
	return ""
}

// suiteIDs resolves names known to be accepted.
func suiteIDs(names []string) []uint16 {
	ids := make([]uint16, 0, len(names))
	for _, n := range names {
		if s := suiteByName(n); s != nil {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// curveIDs resolves canonical curve names.
func curveIDs(names []string) []tls.CurveID {
	ids := make([]tls.CurveID, 0, len(names))
	for _, n := range names {
		if id, ok := curveByName(n); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// curveByName finds a group by canonical name or alias.
func curveByName(name string) (tls.CurveID, bool) {
	id, _, ok := canonicalCurve(name)
	return id, ok
}

// canonicalCurve finds a group by canonical name or alias (any case) and
// returns its canonical name too.
func canonicalCurve(name string) (tls.CurveID, string, bool) {
	if a, ok := curveAliases[strings.ToLower(name)]; ok {
		name = a
	}
	for _, c := range curveNames {
		if strings.EqualFold(c.name, name) {
			return c.id, c.name, true
		}
	}
	return 0, "", false
}

// tls13Only reports whether a group is a post-quantum hybrid, which Go
// offers on TLS 1.3 only.
func tls13Only(id tls.CurveID) bool {
	return id == tls.X25519MLKEM768 || id == tls.SecP256r1MLKEM768 || id == tls.SecP384r1MLKEM1024
}

// resolveTLSCrypto applies and checks profile, min_version, cipher_suites
// and curves of one TLS table (path `virtual_server "web": tls` or
// `pool "p": tls`). Raw values are nil when not in the file.
//
//   - profile is intermediate (default) or modern. It sets the default of
//     min_version: "1.2" or "1.3"; modern with min_version = "1.2" is an
//     error (it would no longer be modern).
//   - cipher_suites are TLS 1.2 suites; with min_version "1.3" (so with
//     modern) they would do nothing, and setting them is an error.
//   - curves apply to both versions.
func resolveTLSCrypto(v *validator, path string, profile, minVersion *string, suites, curves *[]string) tlsCrypto {
	var c tlsCrypto
	c.resolveVersion(v, path, profile, minVersion)
	c.resolveSuites(v, path, suites)
	c.resolveCurves(v, path, curves)
	return c
}

// tls12 reports whether TLS 1.2 is spoken: min_version is not "1.3" (an
// invalid one, already reported, counts as "1.2").
func (c *tlsCrypto) tls12() bool { return c.minVersionID != tls.VersionTLS13 }

// resolveVersion sets profile and min_version, whose default the profile
// decides.
func (c *tlsCrypto) resolveVersion(v *validator, path string, profile, minVersion *string) {
	c.profile = strOr(profile, ProfileIntermediate)
	minDefault := "1.2"
	switch c.profile {
	case ProfileIntermediate:
	case ProfileModern:
		minDefault = "1.3"
	default:
		v.add(path, "profile", fmt.Sprintf("%q is not one of %s | %s", c.profile, ProfileIntermediate, ProfileModern))
	}
	c.minVersion = strOr(minVersion, minDefault)
	if id, ok := tlsVersions[c.minVersion]; ok {
		c.minVersionID = id
		if c.profile == ProfileModern && id < tls.VersionTLS13 {
			v.add(path, "min_version", fmt.Sprintf(`%q is below profile "modern", which is TLS 1.3 only (leave min_version out, or use profile = "intermediate")`, c.minVersion))
		}
	} else {
		v.add(path, "min_version", fmt.Sprintf("%q is not one of 1.2 | 1.3", c.minVersion))
	}
}

// resolveSuites sets cipher_suites once the version is known: the listed
// ones, else the defaults while TLS 1.2 is spoken; none when only TLS 1.3
// is, where listing any is an error.
func (c *tlsCrypto) resolveSuites(v *validator, path string, suites *[]string) {
	tls12 := c.tls12()
	switch {
	case suites != nil && !tls12:
		why := `min_version is "1.3"`
		if c.profile == ProfileModern {
			why = `profile "modern" is TLS 1.3 only`
		}
		v.add(path, "cipher_suites", "has no effect: "+why+", and Go chooses the TLS 1.3 suites itself (they cannot be configured); leave cipher_suites out")
	case suites != nil && len(*suites) == 0:
		v.add(path, "cipher_suites", "is empty: no TLS 1.2 client could connect; leave it out for the defaults, or set min_version = \"1.3\"")
	case suites != nil:
		checkSuiteNames(v, path, *suites)
		c.suites = *suites
	case tls12:
		c.suites = DefaultCipherSuites()
	}
	if tls12 {
		c.suiteIDs = suiteIDs(c.suites)
	} else {
		c.suites = nil
	}
}

// checkSuiteNames checks each listed cipher suite: one Go knows, by its
// IANA name, that tether accepts (suiteRefusal), listed once.
func checkSuiteNames(v *validator, path string, names []string) {
	seen := map[string]bool{}
	for _, n := range names {
		key := fmt.Sprintf("cipher_suites %q", n)
		s := suiteByName(n)
		switch {
		case s == nil:
			msg := "is not a cipher suite Go knows; use IANA names such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
			if iana, ok := opensslSuites[strings.ToUpper(n)]; ok {
				msg = fmt.Sprintf("is OpenSSL's name; use the IANA name %q", iana)
			}
			v.add(path, key, msg)
		case suiteRefusal(s) != "":
			v.add(path, key, suiteRefusal(s))
		case seen[n]:
			v.add(path, key, "is listed twice")
		}
		seen[n] = true
	}
}

// resolveCurves sets curves, for both versions: the listed ones by their
// canonical names, else the defaults. While TLS 1.2 is spoken, one of them
// must be a classic ECDHE group.
func (c *tlsCrypto) resolveCurves(v *validator, path string, curves *[]string) {
	if curves == nil {
		c.curves = DefaultCurves()
	} else {
		if len(*curves) == 0 {
			v.add(path, "curves", "is empty; leave it out for the defaults")
		}
		c.curves = canonicalCurves(v, path, *curves)
	}
	c.curveIDs = curveIDs(c.curves)
	if c.tls12() && len(c.curveIDs) > 0 {
		classic := false
		for _, id := range c.curveIDs {
			classic = classic || !tls13Only(id)
		}
		if !classic {
			v.add(path, "curves", "lists only post-quantum hybrids, which are TLS 1.3 only: a TLS 1.2 client would find no ECDHE group; add X25519 or P-256, or set min_version = \"1.3\"")
		}
	}
}

// canonicalCurves returns the canonical names of the listed curves, in
// order; it reports (and leaves out) those Go does not know, and reports
// those listed twice.
func canonicalCurves(v *validator, path string, names []string) []string {
	var canons []string
	seen := map[string]bool{}
	for _, n := range names {
		key := fmt.Sprintf("curves %q", n)
		_, canon, ok := canonicalCurve(n)
		switch {
		case !ok:
			known := make([]string, len(curveNames))
			for i, k := range curveNames {
				known[i] = k.name
			}
			v.add(path, key, "is not a curve (key exchange group) Go knows: "+strings.Join(known, " | "))
			continue
		case seen[canon]:
			v.add(path, key, "is listed twice")
		}
		seen[canon] = true
		canons = append(canons, canon)
	}
	return canons
}

// keyKind is the signature algorithm family of a certificate's key, which
// decides the TLS 1.2 suites it can serve: ECDSA and Ed25519 keys the
// TLS_ECDHE_ECDSA_* suites, RSA keys the TLS_ECDHE_RSA_* ones.
func keyKind(leaf *x509.Certificate) string {
	switch leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return "RSA"
	}
	return ""
}

// suitesServe reports whether one of the suites can be used with a
// certificate whose key is of kind.
func suitesServe(suites []string, kind string) bool {
	want := "TLS_ECDHE_RSA_"
	if kind == "ECDSA" || kind == "Ed25519" {
		want = "TLS_ECDHE_ECDSA_"
	}
	for _, s := range suites {
		if strings.HasPrefix(s, want) {
			return true
		}
	}
	return false
}

// checkSuitesServe is the check of cipher_suites against the certificates
// served: each one needs at least one listed suite for TLS 1.2 clients.
// certs holds each certificate's leaf (nil when it did not load: already
// an error). With ACME the keys are certmagic's default, ECDSA P-256,
// which tether does not change.
func checkSuitesServe(v *validator, path string, suites []string, files []Certificate, leaves []*x509.Certificate, acme bool) {
	if suites == nil {
		return
	}
	hint := func(kind string) string {
		if kind == "RSA" {
			return "add a TLS_ECDHE_RSA_WITH_* suite"
		}
		return "add a TLS_ECDHE_ECDSA_WITH_* suite"
	}
	for i, leaf := range leaves {
		if leaf == nil {
			continue
		}
		kind := keyKind(leaf)
		if kind == "" || suitesServe(suites, kind) {
			continue
		}
		v.add(path, "cipher_suites", fmt.Sprintf("no listed suite can be used with certificate %d %q (%s key): TLS 1.2 clients could not connect; %s",
			i+1, files[i].Cert, kind, hint(kind)))
	}
	if acme && !suitesServe(suites, "ECDSA") {
		v.add(path, "cipher_suites", "no listed suite can be used with the ACME certificates (ECDSA P-256 keys, certmagic's default): TLS 1.2 clients could not connect; "+hint("ECDSA"))
	}
}
