package config

import (
	"crypto/tls"
	"reflect"
	"strings"
	"testing"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// The defaults on both sides are Mozilla's intermediate profile: the six
// ECDHE + AEAD TLS 1.2 suites, X25519MLKEM768 then X25519, P-256, P-384.
func TestTLSSuitesAndCurvesDefaultToIntermediateOnBothSides(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "a", "x.test", testpki.Options{})
	cfg, err := loadText(t, dir, tlsPool+"[pool.p.tls]\n"+tlsVS+"[virtual_server.tls]\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n")
	if err != nil {
		t.Fatal(err)
	}
	wantSuites := []string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	}
	wantIDs := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	wantCurves := []string{"X25519MLKEM768", "X25519", "P-256", "P-384"}
	wantCurveIDs := []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
	vs, pool := cfg.VirtualServers[0].TLS, cfg.Pools["p"].TLS
	for _, got := range []struct {
		side, profile, min string
		suites             []string
		ids                []uint16
		curves             []string
		curveIDs           []tls.CurveID
	}{
		{"virtual server", vs.Profile, vs.MinVersion, vs.CipherSuites, vs.CipherSuiteIDs, vs.Curves, vs.CurveIDs},
		{"pool", pool.Profile, pool.MinVersion, pool.CipherSuites, pool.CipherSuiteIDs, pool.Curves, pool.CurveIDs},
	} {
		if got.profile != ProfileIntermediate || got.min != "1.2" || !reflect.DeepEqual(got.suites, wantSuites) || !reflect.DeepEqual(got.ids, wantIDs) ||
			!reflect.DeepEqual(got.curves, wantCurves) || !reflect.DeepEqual(got.curveIDs, wantCurveIDs) {
			t.Errorf("%s: %+v", got.side, got)
		}
	}
	for _, id := range vs.CipherSuiteIDs {
		for _, bad := range tls.InsecureCipherSuites() {
			if bad.ID == id {
				t.Errorf("default suite %s is insecure", bad.Name)
			}
		}
	}
}

// profile = "modern" is TLS 1.3 only: min_version 1.3, no TLS 1.2 suites.
// A custom list keeps its subset; curve aliases load as canonical names;
// everything prints and loads back the same.
func TestTLSProfileModernAndCustomListsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "a", "x.test", testpki.Options{})
	leaf(t, ca, "r", "x.test", testpki.Options{RSA: true})
	text := tlsPool + `
[pool.p.tls]
profile = "modern"
curves = ["x25519", "secp384r1"]
` + tlsVS + `
[virtual_server.tls]
certificates = [{ cert = "a.pem", key = "a.key" }, { cert = "r.pem", key = "r.key" }]
cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]
curves = ["P-256", "CURVE"]
[[virtual_server]]
name = "m"
listen = "127.0.0.1:7380"
pool = "p"
[virtual_server.tls]
certificates = [{ cert = "a.pem", key = "a.key" }]
profile = "modern"
`
	_, err := loadText(t, dir, strings.Replace(text, "CURVE", "prime256v1x", 1))
	if err == nil || !strings.Contains(err.Error(), `curves "prime256v1x": is not a curve`) {
		t.Fatalf("want the unknown curve named, got %v", err)
	}
	cfg, err := loadText(t, dir, strings.Replace(text, "CURVE", "X25519", 1))
	if err != nil {
		t.Fatal(err)
	}
	vs, m, pool := cfg.VirtualServers[0].TLS, cfg.VirtualServers[1].TLS, cfg.Pools["p"].TLS
	if !reflect.DeepEqual(vs.CipherSuiteIDs, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}) ||
		!reflect.DeepEqual(vs.CurveIDs, []tls.CurveID{tls.CurveP256, tls.X25519}) {
		t.Errorf("custom lists: %+v", vs)
	}
	if m.Profile != ProfileModern || m.MinVersion != "1.3" || m.MinVersionID != tls.VersionTLS13 || m.CipherSuites != nil || m.CipherSuiteIDs != nil ||
		!reflect.DeepEqual(m.Curves, DefaultCurves()) {
		t.Errorf("modern: %+v", m)
	}
	if pool.Profile != ProfileModern || pool.MinVersionID != tls.VersionTLS13 || pool.CipherSuites != nil ||
		!reflect.DeepEqual(pool.Curves, []string{"X25519", "P-384"}) || !reflect.DeepEqual(pool.CurveIDs, []tls.CurveID{tls.X25519, tls.CurveP384}) {
		t.Errorf("pool modern: %+v", pool)
	}
	out, err := Effective(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse([]byte(strings.Replace(out, "[tcp_profile.tcp]", "[tcp_profile.root_copy]", 1)))
	if err != nil {
		t.Fatalf("effective config does not load: %v\n%s", err, out)
	}
	for i := range cfg.VirtualServers {
		if a, b := again.VirtualServers[i].TLS, cfg.VirtualServers[i].TLS; !reflect.DeepEqual(a, b) {
			t.Errorf("virtual server %d tls differs after round trip:\n%+v\n%+v", i, a, b)
		}
	}
	if a, b := again.Pools["p"].TLS, cfg.Pools["p"].TLS; !reflect.DeepEqual(a, b) {
		t.Errorf("pool tls differs after round trip:\n%+v\n%+v", a, b)
	}
}

func TestTLSSuiteAndCurveErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	ecCert, _ := leaf(t, ca, "a", "x.test", testpki.Options{})
	rsaCert, _ := leaf(t, ca, "r", "x.test", testpki.Options{RSA: true})
	static := `certificates = [{ cert = "a.pem", key = "a.key" }]` + "\n"
	vsTLS := func(body string) string { return tlsPool + tlsVS + "[virtual_server.tls]\n" + body + "\n" }
	poolTLS := func(body string) string { return tlsPool + "[pool.p.tls]\n" + body + "\n" + tlsVS }
	const vsp = `virtual_server "vs": tls: `
	const pp = `pool "p": tls: `
	const gcm = `"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"`

	cases := []struct {
		name, toml string
		want       []string
	}{
		{"unknown suite", vsTLS(static + `cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA512"]`),
			[]string{vsp + `cipher_suites "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA512": is not a cipher suite Go knows; use IANA names`}},
		{"OpenSSL name", vsTLS(static + `cipher_suites = ["ECDHE-ECDSA-AES128-GCM-SHA256"]`),
			[]string{vsp + `cipher_suites "ECDHE-ECDSA-AES128-GCM-SHA256": is OpenSSL's name; use the IANA name "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"`}},
		{"TLS 1.3 suite", vsTLS(static + `cipher_suites = [` + gcm + `, "TLS_AES_128_GCM_SHA256"]`),
			[]string{vsp + `cipher_suites "TLS_AES_128_GCM_SHA256": is a TLS 1.3 suite: Go chooses the TLS 1.3 suites itself`}},
		{"insecure suite", vsTLS(static + `cipher_suites = [` + gcm + `, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"]`),
			[]string{vsp + `cipher_suites "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": is insecure`, vsp + `cipher_suites "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": is insecure`}},
		{"CBC suite", vsTLS(static + `cipher_suites = [` + gcm + `, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"]`),
			[]string{vsp + `cipher_suites "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": is a CBC suite, refused`}},
		{"RSA key exchange", vsTLS(static + `cipher_suites = [` + gcm + `, "TLS_RSA_WITH_AES_128_GCM_SHA256"]`),
			[]string{vsp + `cipher_suites "TLS_RSA_WITH_AES_128_GCM_SHA256": uses RSA key exchange, refused: no forward secrecy`}},
		{"duplicate suite", vsTLS(static + `cipher_suites = [` + gcm + `, ` + gcm + `]`),
			[]string{vsp + `cipher_suites "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": is listed twice`}},
		{"empty suites", vsTLS(static + `cipher_suites = []`), []string{vsp + "cipher_suites: is empty"}},
		{"suites with modern", vsTLS(static + "profile = \"modern\"\ncipher_suites = [" + gcm + "]"),
			[]string{vsp + `cipher_suites: has no effect: profile "modern" is TLS 1.3 only`}},
		{"suites with min_version 1.3", vsTLS(static + "min_version = \"1.3\"\ncipher_suites = [" + gcm + "]"),
			[]string{vsp + `cipher_suites: has no effect: min_version is "1.3"`}},
		{"modern with min_version 1.2", vsTLS(static + "profile = \"modern\"\nmin_version = \"1.2\""),
			[]string{vsp + `min_version: "1.2" is below profile "modern", which is TLS 1.3 only`}},
		{"unknown profile", vsTLS(static + `profile = "old"`), []string{vsp + `profile: "old" is not one of intermediate | modern`}},
		{"ECDSA certificate, RSA suites only", vsTLS(static + `cipher_suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]`),
			[]string{vsp + `cipher_suites: no listed suite can be used with certificate 1 "` + ecCert + `" (ECDSA key): TLS 1.2 clients could not connect; add a TLS_ECDHE_ECDSA_WITH_* suite`}},
		{"RSA certificate, ECDSA suites only", vsTLS(`certificates = [{ cert = "a.pem", key = "a.key" }, { cert = "r.pem", key = "r.key" }]` + "\ncipher_suites = [" + gcm + "]"),
			[]string{vsp + `cipher_suites: no listed suite can be used with certificate 2 "` + rsaCert + `" (RSA key): TLS 1.2 clients could not connect; add a TLS_ECDHE_RSA_WITH_* suite`}},
		{"ACME, RSA suites only", vsTLS("acme = { domains = [\"x.test\"] }\ncipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\"]"),
			[]string{vsp + "cipher_suites: no listed suite can be used with the ACME certificates (ECDSA P-256 keys, certmagic's default)"}},
		{"unknown curve", vsTLS(static + `curves = ["X448"]`),
			[]string{vsp + `curves "X448": is not a curve (key exchange group) Go knows: X25519MLKEM768 | SecP256r1MLKEM768 | SecP384r1MLKEM1024 | X25519 | P-256 | P-384 | P-521`}},
		{"duplicate curve by alias", vsTLS(static + `curves = ["P-256", "prime256v1"]`), []string{vsp + `curves "prime256v1": is listed twice`}},
		{"empty curves", vsTLS(static + `curves = []`), []string{vsp + "curves: is empty"}},
		{"hybrids only with TLS 1.2", vsTLS(static + `curves = ["X25519MLKEM768"]`),
			[]string{vsp + "curves: lists only post-quantum hybrids, which are TLS 1.3 only"}},
		{"pool unknown suite", poolTLS(`cipher_suites = ["TLS_NOPE"]`), []string{pp + `cipher_suites "TLS_NOPE": is not a cipher suite Go knows`}},
		{"pool CBC suite", poolTLS(`cipher_suites = ["TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"]`), []string{pp + `cipher_suites "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": is a CBC suite, refused`}},
		{"pool insecure suite", poolTLS(`cipher_suites = ["TLS_RSA_WITH_3DES_EDE_CBC_SHA"]`), []string{pp + `cipher_suites "TLS_RSA_WITH_3DES_EDE_CBC_SHA": is insecure`}},
		{"pool duplicate suite", poolTLS(`cipher_suites = [` + gcm + `, ` + gcm + `]`), []string{pp + `cipher_suites "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": is listed twice`}},
		{"pool empty suites", poolTLS(`cipher_suites = []`), []string{pp + "cipher_suites: is empty"}},
		{"pool suites with modern", poolTLS("profile = \"modern\"\ncipher_suites = [" + gcm + "]"), []string{pp + `cipher_suites: has no effect`}},
		{"pool unknown curve", poolTLS(`curves = ["P-512"]`), []string{pp + `curves "P-512": is not a curve`}},
		{"pool empty curves", poolTLS(`curves = []`), []string{pp + "curves: is empty"}},
		{"pool unknown profile", poolTLS(`profile = "Modern "`), []string{pp + `profile: "Modern " is not one of intermediate | modern`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadText(t, dir, tc.toml)
			if err == nil {
				t.Fatalf("accepted, want an error containing %q; got %+v", tc.want, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// An RSA-only or ECDSA-only suite list is fine when every certificate can
// use it.
func TestTLSSuitesMatchingTheKeysLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "a", "x.test", testpki.Options{})
	leaf(t, ca, "r", "x.test", testpki.Options{RSA: true})
	for _, body := range []string{
		"certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\"]",
		"certificates = [{ cert = \"r.pem\", key = \"r.key\" }]\ncipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]",
		"acme = { domains = [\"x.test\"] }\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]",
	} {
		if _, err := loadText(t, dir, tlsPool+tlsVS+"[virtual_server.tls]\n"+body+"\n"); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}
