package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// leaf issues base.pem (the leaf, then the CA) and base.key into the CA's
// directory for name ("" = no subjectAltName) and returns their paths. It
// is valid for 90 days unless o says otherwise: past tether's expiry
// warning.
func leaf(t *testing.T, ca *testpki.CA, base, name string, o testpki.Options) (certFile, keyFile string) {
	t.Helper()
	o.Chain = true
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	l := ca.Issue(t, base, name, o)
	return l.CertFile, l.KeyFile
}

// loadText writes text as dir/tether.toml and loads it with LoadFile.
func loadText(t *testing.T, dir, text string) (*Config, error) {
	t.Helper()
	path := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return LoadFile(path)
}

const tlsPool = `
[pool.p]
members = [{ address = "127.0.0.1:6379" }]
`

const tlsVS = `
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:7379"
pool = "p"
`

func TestTLSStaticConfigLoadsWithDefaultsAndAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "ec", "x.test", testpki.Options{})
	leaf(t, ca, "rsa", "rsa.test", testpki.Options{RSA: true, Names: []string{"127.0.0.1"}})
	leaf(t, ca, "client", "x.test", testpki.Options{RSA: true, Client: true})
	cfg, err := loadText(t, dir, tlsPool+`
[pool.p.tls]
ca = "ca.pem"
cert = "client.pem"
key = "client.key"
`+tlsVS+`mode = "http"
[virtual_server.tls]
certificates = [{ cert = "ec.pem", key = "ec.key" }, { cert = "rsa.pem", key = "./rsa.key" }]
[[virtual_server]]
name = "raw"
listen = "127.0.0.1:7380"
pool = "p"
[virtual_server.tls]
certificates = [{ cert = "ec.pem", key = "ec.key" }, { cert = "rsa.pem", key = "rsa.key", default = true }]
client_auth = "require"
client_ca = "ca.pem"
min_version = "1.3"
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", cfg.Warnings)
	}
	abs := func(name string) string { return filepath.Join(dir, name) }

	httpTLS := cfg.VirtualServers[0].TLS
	want := DefaultTLS(ModeHTTP)
	want.Certificates = []Certificate{{Cert: abs("ec.pem"), Key: abs("ec.key"), Default: true}, {Cert: abs("rsa.pem"), Key: abs("rsa.key")}}
	if httpTLS == nil || !reflect.DeepEqual(*httpTLS, want) {
		t.Fatalf("http-mode tls =\n%+v\nwant\n%+v", httpTLS, want)
	}
	if want.MinVersion != "1.2" || want.MinVersionID != tls.VersionTLS12 || !reflect.DeepEqual(want.ALPN, []string{"http/1.1"}) ||
		want.ClientAuth != ClientAuthNone || !want.SessionTickets || want.TicketKeyRotation != 12*time.Hour ||
		want.HandshakeTimeout != 10*time.Second || want.WatchInterval != 5*time.Second {
		t.Fatalf("DefaultTLS(http) = %+v", want)
	}

	tcpTLS := cfg.VirtualServers[1].TLS
	if tcpTLS == nil || len(tcpTLS.ALPN) != 0 {
		t.Fatalf("tcp mode must offer no ALPN by default: %+v", tcpTLS)
	}
	if tcpTLS.Certificates[0].Default || !tcpTLS.Certificates[1].Default {
		t.Errorf("default = true on the second certificate must make it the only default: %+v", tcpTLS.Certificates)
	}
	if tcpTLS.ClientAuth != ClientAuthRequire || tcpTLS.ClientCA != abs("ca.pem") || tcpTLS.MinVersionID != tls.VersionTLS13 {
		t.Errorf("tcp-mode tls = %+v", tcpTLS)
	}

	pt := cfg.Pools["p"].TLS
	wantPool := DefaultPoolTLS()
	wantPool.CA, wantPool.Cert, wantPool.Key = abs("ca.pem"), abs("client.pem"), abs("client.key")
	if wantPool.MinVersion != "1.2" || wantPool.HandshakeTimeout != 5*time.Second || !wantPool.SessionResumption {
		t.Fatalf("DefaultPoolTLS() = %+v", wantPool)
	}
	if pt == nil || !reflect.DeepEqual(*pt, wantPool) {
		t.Fatalf("pool tls =\n%+v\nwant\n%+v", pt, wantPool)
	}
	if pt.ALPN != nil {
		t.Errorf("pool alpn must stay nil when unset (the proxy decides): %q", pt.ALPN)
	}
	if cfg.VirtualServers[0].TLS.Certificates[0].Cert[0] != '/' {
		t.Errorf("paths must be absolute: %q", cfg.VirtualServers[0].TLS.Certificates[0].Cert)
	}
}

func TestTLSACMEDefaults(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	cfg, err := loadText(t, dir, tlsPool+tlsVS+`
[virtual_server.tls]
acme = { email = "ops@example.com", domains = ["x.test", "127.0.0.1"], storage = "acme", ca_root = "ca.pem" }
`)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.VirtualServers[0].TLS.ACME
	want := ACME{
		Email:       "ops@example.com",
		CA:          "https://acme-v02.api.letsencrypt.org/directory",
		Domains:     []string{"x.test", "127.0.0.1"},
		Storage:     filepath.Join(dir, "acme"),
		CARoot:      ca.File,
		Challenges:  []string{ChallengeTLSALPN},
		HTTPPort:    80,
		TLSALPNPort: 443,

		RenewInterval:      10 * time.Minute,
		RenewalWindowRatio: 1.0 / 3,
	}
	if a == nil || !reflect.DeepEqual(*a, want) {
		t.Fatalf("acme =\n%+v\nwant\n%+v", a, want)
	}
	if len(cfg.VirtualServers[0].TLS.Certificates) != 0 {
		t.Errorf("acme mode has no static certificates")
	}

	cfg, err = loadText(t, dir, tlsPool+tlsVS+`
[virtual_server.tls.acme]
ca = "https://127.0.0.1:14000/dir"
challenges = ["http-01", "tls-alpn-01"]
http_port = 5002
tls_alpn_port = 5001
on_demand = true
on_demand_allow = ["*.x.test", "y.test"]
renew_interval = "1m"
renewal_window_ratio = 0.5
`)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.VirtualServers[0].TLS.ACME; a.HTTPPort != 5002 || a.TLSALPNPort != 5001 || !a.OnDemand || a.Storage != "" ||
		a.RenewInterval != time.Minute || a.RenewalWindowRatio != 0.5 ||
		!reflect.DeepEqual(a.Challenges, []string{"http-01", "tls-alpn-01"}) || a.CA != "https://127.0.0.1:14000/dir" {
		t.Fatalf("acme = %+v", a)
	}
}

func TestTLSRelativePathsFollowTheConfigFile(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "etc", "tether")
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: filepath.Join(confDir, "certs")})
	leaf(t, ca, "web", "x.test", testpki.Options{})
	text := tlsPool + `
[pool.p.tls]
ca = "certs/ca.pem"
` + tlsVS + `
[virtual_server.tls]
certificates = [{ cert = "certs/web.pem", key = "certs/../certs/web.key" }]
`
	// LoadFile: from the file's directory, whatever the working directory.
	cfg, err := loadText(t, confDir, text)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.VirtualServers[0].TLS.Certificates[0]
	if c.Cert != filepath.Join(confDir, "certs", "web.pem") || c.Key != filepath.Join(confDir, "certs", "web.key") ||
		cfg.Pools["p"].TLS.CA != filepath.Join(confDir, "certs", "ca.pem") {
		t.Fatalf("paths not taken from the config's directory: %+v %+v", c, cfg.Pools["p"].TLS)
	}
	// Parse: from the working directory.
	if _, err := Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), "certs/web.pem") {
		t.Fatalf("Parse from the package directory must not find certs/web.pem: %v", err)
	}
	t.Chdir(confDir)
	cfg, err = Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.VirtualServers[0].TLS.Certificates[0].Cert; got != filepath.Join(confDir, "certs", "web.pem") {
		t.Fatalf("Parse resolved %q, want it from the working directory", got)
	}
}

func TestTLSBadConfigNamesKeyAndReason(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "a", "x.test", testpki.Options{})
	leaf(t, ca, "b", "x.test", testpki.Options{RSA: true})
	leaf(t, ca, "nosan", "", testpki.Options{})
	future := time.Now().Add(48 * time.Hour)
	leaf(t, ca, "future", "x.test", testpki.Options{NotBefore: future, NotAfter: future.Add(48 * time.Hour)})
	testpki.WriteFile(t, filepath.Join(dir, "junk.pem"), []byte("not pem at all\n"))
	abs := func(name string) string { return filepath.Join(dir, name) }
	vsTLS := func(mode, tlsBody string) string {
		return tlsPool + tlsVS + mode + "\n[virtual_server.tls]\n" + tlsBody + "\n"
	}
	static := `certificates = [{ cert = "a.pem", key = "a.key" }]` + "\n"
	poolTLS := func(body string) string { return tlsPool + "[pool.p.tls]\n" + body + "\n" + tlsVS }
	const vsp = `virtual_server "vs": tls: `
	const acmep = vsp + "acme: "
	const pp = `pool "p": tls: `

	cases := []struct {
		name, toml string
		want       []string
	}{
		{"neither certificates nor acme", vsTLS("", `min_version = "1.2"`), []string{`virtual_server "vs": tls: one of certificates or acme is required`}},
		{"empty tls table", vsTLS("", ""), []string{`virtual_server "vs": tls: one of certificates or acme is required`}},
		{"both certificates and acme", vsTLS("", static+`acme = { domains = ["x.test"] }`), []string{vsp + "certificates and acme are both set"}},
		{"two defaults", vsTLS("", `certificates = [{ cert = "a.pem", key = "a.key", default = true }, { cert = "b.pem", key = "b.key" }, { cert = "b.pem", key = "b.key", default = true }]`),
			[]string{vsp + "certificate 3: default: only one certificate may be the default (certificate 1 is)"}},
		{"certificate without key", vsTLS("", `certificates = [{ cert = "a.pem" }]`), []string{vsp + "certificate 1: key: is required"}},
		{"certificate without cert", vsTLS("", `certificates = [{ key = "a.key" }]`), []string{vsp + "certificate 1: cert: is required"}},
		{"missing cert file", vsTLS("", `certificates = [{ cert = "a.pem", key = "a.key" }, { cert = "nope.pem", key = "a.key" }]`),
			[]string{vsp + `certificate 2: cert "` + abs("nope.pem") + `": cannot read it: no such file or directory`}},
		{"missing key file", vsTLS("", `certificates = [{ cert = "a.pem", key = "nope.key" }]`),
			[]string{vsp + `certificate 1: key "` + abs("nope.key") + `": cannot read it: no such file or directory`}},
		{"cert file is not PEM", vsTLS("", `certificates = [{ cert = "junk.pem", key = "a.key" }]`),
			[]string{vsp + `certificate 1: cert "` + abs("junk.pem") + `": holds no PEM certificate`}},
		{"key file is not PEM", vsTLS("", `certificates = [{ cert = "a.pem", key = "junk.pem" }]`),
			[]string{vsp + `certificate 1: key "` + abs("junk.pem") + `": holds no PEM private key`}},
		{"key file holds a certificate", vsTLS("", `certificates = [{ cert = "a.pem", key = "a.pem" }]`),
			[]string{vsp + `certificate 1: key "` + abs("a.pem") + `": holds no PEM private key`}},
		{"certificate without subjectAltName", vsTLS("", `certificates = [{ cert = "nosan.pem", key = "nosan.key" }]`),
			[]string{vsp + `certificate 1: cert "` + abs("nosan.pem") + `": the certificate names no DNS name or IP address`}},
		{"certificate not yet valid", vsTLS("", `certificates = [{ cert = "future.pem", key = "future.key" }]`),
			[]string{vsp + `certificate 1: cert "` + abs("future.pem") + `": is not valid yet: valid from ` + future.UTC().Format("2006-01-02 15:04:05 UTC")}},
		{"acme without domains", vsTLS("", `acme = { email = "ops@example.com" }`), []string{acmep + "domains: at least one domain is required"}},
		{"acme wildcard domain", vsTLS("", `acme = { domains = ["*.x.test"] }`), []string{acmep + `domains "*.x.test": a wildcard name needs the dns-01 challenge`}},
		{"acme bad domain", vsTLS("", `acme = { domains = ["x test"] }`), []string{acmep + `domains "x test": is not a host name`}},
		{"acme bad email", vsTLS("", `acme = { email = "ops", domains = ["x.test"] }`), []string{acmep + `email "ops": is not an email address`}},
		{"acme on_demand without allow", vsTLS("", `acme = { on_demand = true }`), []string{acmep + "on_demand_allow: is required with on_demand = true"}},
		{"acme on_demand empty allow", vsTLS("", `acme = { on_demand = true, on_demand_allow = [] }`), []string{acmep + "on_demand_allow: is required with on_demand = true"}},
		{"acme allow without on_demand", vsTLS("", `acme = { domains = ["x.test"], on_demand_allow = ["y.test"] }`), []string{acmep + "on_demand_allow: applies with on_demand = true only"}},
		{"acme bad allow pattern", vsTLS("", `acme = { on_demand = true, on_demand_allow = ["a*.x.test", "*", "ok.test"] }`),
			[]string{acmep + `on_demand_allow "a*.x.test": want an exact name or a pattern like "*.example.com"`, acmep + `on_demand_allow "*": want`}},
		{"acme no challenges", vsTLS("", `acme = { domains = ["x.test"], challenges = [] }`), []string{acmep + "challenges: at least one is required: tls-alpn-01 | http-01"}},
		{"acme unknown challenge", vsTLS("", `acme = { domains = ["x.test"], challenges = ["dns-01"] }`), []string{acmep + `challenges: "dns-01" is not one of tls-alpn-01 | http-01`}},
		{"acme ports out of range", vsTLS("", `acme = { domains = ["x.test"], http_port = 0, tls_alpn_port = 70000 }`),
			[]string{acmep + "http_port: must be between 1 and 65535", acmep + "tls_alpn_port: must be between 1 and 65535"}},
		{"acme renewal timing out of range", vsTLS("", `acme = { domains = ["x.test"], renew_interval = "100ms", renewal_window_ratio = 1.0 }`),
			[]string{acmep + "renew_interval: must be between 1s and 24h", acmep + "renewal_window_ratio 1: must be above 0 and below 1"}},
		{"acme plain http CA", vsTLS("", `acme = { domains = ["x.test"], ca = "http://127.0.0.1:14000/dir" }`),
			[]string{acmep + `ca "http://127.0.0.1:14000/dir": must be the https:// URL of an ACME directory`}},
		{"acme storage without parent", vsTLS("", `acme = { domains = ["x.test"], storage = "no/such/dir" }`),
			[]string{acmep + `storage "` + abs("no/such/dir") + `": does not exist`}},
		{"acme storage is a file", vsTLS("", `acme = { domains = ["x.test"], storage = "a.pem" }`),
			[]string{acmep + `storage "` + abs("a.pem") + `": is not a directory`}},
		{"acme ca_root missing", vsTLS("", `acme = { domains = ["x.test"], ca_root = "nope.pem" }`),
			[]string{acmep + `ca_root "` + abs("nope.pem") + `": cannot read it`}},
		{"acme ca_root not PEM", vsTLS("", `acme = { domains = ["x.test"], ca_root = "junk.pem" }`),
			[]string{acmep + `ca_root "` + abs("junk.pem") + `": holds no PEM certificate`}},
		{"bad client_auth", vsTLS("", static+`client_auth = "optional"`), []string{vsp + `client_auth: "optional" is not one of none | request | require`}},
		{"require without client_ca", vsTLS("", static+`client_auth = "require"`), []string{vsp + `client_ca: is required with client_auth = "require"`}},
		{"request without client_ca", vsTLS("", static+`client_auth = "request"`), []string{vsp + `client_ca: is required with client_auth = "request"`}},
		{"client_ca without client_auth", vsTLS("", static+`client_ca = "ca.pem"`), []string{vsp + `client_ca: is set but client_auth is "none"`}},
		{"client_ca not PEM", vsTLS("", static+"client_auth = \"require\"\nclient_ca = \"junk.pem\""), []string{vsp + `client_ca "` + abs("junk.pem") + `": holds no PEM certificate`}},
		{"client_ca missing", vsTLS("", static+"client_auth = \"require\"\nclient_ca = \"nope.pem\""), []string{vsp + `client_ca "` + abs("nope.pem") + `": cannot read it`}},
		{"min_version 1.1", vsTLS("", static+`min_version = "1.1"`), []string{vsp + `min_version: "1.1" is not one of 1.2 | 1.3`}},
		{"h2 in http mode", vsTLS(`mode = "http"`, static+`alpn = ["h2", "http/1.1"]`), []string{vsp + `alpn "h2": HTTP/2 is not supported`}},
		{"other alpn in http mode", vsTLS(`mode = "http"`, static+`alpn = ["spdy/3"]`), []string{vsp + `alpn "spdy/3": http mode speaks http/1.1 only`}},
		{"empty alpn name", vsTLS("", static+`alpn = [""]`), []string{vsp + `alpn "": a protocol name is 1 to 255 bytes`}},
		{"negative handshake_timeout", vsTLS("", static+`handshake_timeout = "-1s"`), []string{vsp + "handshake_timeout: must be > 0"}},
		{"negative watch_interval", vsTLS("", static+`watch_interval = "-5s"`), []string{vsp + "watch_interval: must be >= 0"}},
		{"zero ticket_key_rotation", vsTLS("", static+`ticket_key_rotation = "0s"`), []string{vsp + "ticket_key_rotation: must be > 0"}},
		{"negative ticket_key_rotation", vsTLS("", static+`ticket_key_rotation = "-1h"`), []string{vsp + "ticket_key_rotation: must be > 0"}},
		{"pool cert without key", poolTLS(`cert = "a.pem"`), []string{pp + "key: is required with cert"}},
		{"pool key without cert", poolTLS(`key = "a.key"`), []string{pp + "cert: is required with key"}},
		{"pool ca not PEM", poolTLS(`ca = "junk.pem"`), []string{pp + `ca "` + abs("junk.pem") + `": holds no PEM certificate`}},
		{"pool key mismatch", poolTLS("cert = \"a.pem\"\nkey = \"b.key\""), []string{pp + `key "` + abs("b.key") + `": private key does not match the certificate in "` + abs("a.pem") + `"`}},
		{"pool min_version", poolTLS(`min_version = "1.0"`), []string{pp + `min_version: "1.0" is not one of 1.2 | 1.3`}},
		{"pool negative handshake_timeout", poolTLS(`handshake_timeout = "-1s"`), []string{pp + "handshake_timeout: must be > 0"}},
		{"pool bad server_name", poolTLS(`server_name = "api internal"`), []string{pp + `server_name "api internal": is not a host name`}},
		{"pool h2 under an http-mode virtual server", poolTLS(`alpn = ["h2"]`) + `mode = "http"`,
			[]string{pp + `alpn "h2": virtual_server "vs" uses this pool in http mode, which speaks http/1.1 only`}},
		{"hsts in tcp mode", vsTLS("", static+"[virtual_server.tls.hsts]"), []string{vsp + `hsts: applies to mode = "http" only`}},
		{"hsts negative max_age", vsTLS(`mode = "http"`, static+"[virtual_server.tls.hsts]\nmax_age = \"-1s\""), []string{vsp + "hsts: max_age: must be >= 0"}},
		{"hsts max_age not whole seconds", vsTLS(`mode = "http"`, static+"[virtual_server.tls.hsts]\nmax_age = \"1.5s\""), []string{vsp + `hsts: max_age "1.5s": must be whole seconds`}},
		{"hsts preload without include_subdomains", vsTLS(`mode = "http"`, static+"[virtual_server.tls.hsts]\npreload = true"),
			[]string{vsp + "hsts: preload: needs include_subdomains = true"}},
		{"hsts preload with max_age under a year", vsTLS(`mode = "http"`, static+"[virtual_server.tls.hsts]\nmax_age = \"720h\"\ninclude_subdomains = true\npreload = true"),
			[]string{vsp + "hsts: preload: needs max_age of at least 1 year (31536000 s; is 2592000 s)"}},
		{"hsts and add_response_headers both set it", tlsPool + tlsVS + "mode = \"http\"\n[virtual_server.http]\nadd_response_headers = { \"strict-transport-security\" = \"max-age=1\" }\n[virtual_server.tls]\n" + static + "[virtual_server.tls.hsts]\n",
			[]string{`virtual_server "vs": http: add_response_headers: "strict-transport-security" is also set by [tls.hsts]`}},
		{"unknown hsts key", vsTLS(`mode = "http"`, static+"[virtual_server.tls.hsts]\nmax_agee = \"1s\""), []string{`unknown key "virtual_server.tls.hsts.max_agee" (did you mean "max_age"?)`}},
		{"ocsp_stapling not a bool", vsTLS("", static+`ocsp_stapling = "off"`), []string{"ocsp_stapling"}},
		{"unknown tls key", vsTLS("", static+`min_versoin = "1.3"`), []string{`unknown key "virtual_server.tls.min_versoin" (did you mean "min_version"?)`}},
		{"unknown certificate key", vsTLS("", `certificates = [{ cert = "a.pem", keyy = "a.key" }]`), []string{`unknown key "virtual_server.tls.certificates.keyy" (did you mean "key"?)`}},
		{"unknown acme key", vsTLS("", `acme = { emial = "ops@example.com", domains = ["x.test"] }`), []string{`unknown key "virtual_server.tls.acme.emial" (did you mean "email"?)`}},
		{"unknown pool tls key", poolTLS(`server_nmae = "x"`), []string{`unknown key "pool.p.tls.server_nmae" (did you mean "server_name"?)`}},
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

func TestTLSExpiredCertificateIsRejected(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	expiry := time.Now().Add(-72 * time.Hour)
	cert, _ := leaf(t, ca, "old", "x.test", testpki.Options{NotBefore: expiry.Add(-90 * 24 * time.Hour), NotAfter: expiry})
	leaf(t, ca, "good", "x.test", testpki.Options{})
	_, err := loadText(t, dir, tlsPool+tlsVS+`
[virtual_server.tls]
certificates = [{ cert = "good.pem", key = "good.key" }, { cert = "old.pem", key = "old.key" }]
`)
	want := `virtual_server "vs": tls: certificate 2: cert "` + cert + `": expired on ` + expiry.UTC().Format(time.DateOnly)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want %q, got %v", want, err)
	}
	if strings.Contains(err.Error(), "certificate 1") {
		t.Errorf("the valid certificate was reported too: %v", err)
	}
}

func TestTLSKeyMismatchNamesBothFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	aCert, _ := leaf(t, ca, "a", "x.test", testpki.Options{})
	_, bKey := leaf(t, ca, "b", "x.test", testpki.Options{})
	_, rsaKey := leaf(t, ca, "r", "x.test", testpki.Options{RSA: true})
	for _, key := range []string{bKey, rsaKey} { // same key type, then ECDSA cert with an RSA key
		_, err := loadText(t, dir, tlsPool+tlsVS+`
[virtual_server.tls]
certificates = [{ cert = "a.pem", key = "a.key" }, { cert = "a.pem", key = "`+filepath.Base(key)+`" }]
`)
		want := `virtual_server "vs": tls: certificate 2: key "` + key + `": private key does not match the certificate in "` + aCert + `"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q, got %v", want, err)
		}
		if strings.Contains(err.Error(), "certificate 1") {
			t.Errorf("the matching pair was reported too: %v", err)
		}
	}
}

func TestTLSExpiringSoonWarns(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	end := time.Now().Add(10*24*time.Hour + time.Hour)
	soon, _ := leaf(t, ca, "soon", "x.test", testpki.Options{NotAfter: end})
	leaf(t, ca, "fine", "x.test", testpki.Options{})
	client, _ := leaf(t, ca, "client", "", testpki.Options{NotAfter: end, Client: true})
	cfg, err := loadText(t, dir, tlsPool+`
[pool.p.tls]
cert = "client.pem"
key = "client.key"
`+tlsVS+`
[virtual_server.tls]
certificates = [{ cert = "fine.pem", key = "fine.key" }, { cert = "soon.pem", key = "soon.key" }]
`)
	if err != nil {
		t.Fatal(err)
	}
	date := end.UTC().Format(time.DateOnly)
	want := []string{
		`pool "p": tls: cert "` + client + `": expires on ` + date + ` (in 10 days)`,
		`virtual_server "vs": tls: certificate 2: cert "` + soon + `": expires on ` + date + ` (in 10 days)`,
	}
	if !reflect.DeepEqual(cfg.Warnings, want) {
		t.Fatalf("warnings =\n%q\nwant\n%q", cfg.Warnings, want)
	}
}

func TestTLSInsecureSkipVerifyWarns(t *testing.T) {
	dir := t.TempDir()
	testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	for _, tc := range []struct{ body, want string }{
		{"insecure_skip_verify = true", `pool "p": tls: insecure_skip_verify: member certificates are NOT verified; anyone on the path can impersonate the members`},
		{"insecure_skip_verify = true\nca = \"ca.pem\"", `pool "p": tls: insecure_skip_verify: member certificates are NOT verified; anyone on the path can impersonate the members (ca is not used while this is on)`},
	} {
		cfg, err := loadText(t, dir, tlsPool+"[pool.p.tls]\n"+tc.body+"\n"+tlsVS)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg.Warnings, []string{tc.want}) {
			t.Errorf("warnings = %q, want %q", cfg.Warnings, tc.want)
		}
		if !cfg.Pools["p"].TLS.InsecureSkipVerify {
			t.Errorf("insecure_skip_verify not loaded")
		}
	}
	cfg, err := loadText(t, dir, tlsPool+"[pool.p.tls]\n"+tlsVS)
	if err != nil || len(cfg.Warnings) != 0 || cfg.Pools["p"].TLS == nil {
		t.Fatalf("an empty [pool.p.tls] is TLS with system roots and no warning: %v %q", err, cfg.Warnings)
	}
}

// The printed effective config (`tether check --print`) loads again to the
// same TLS settings.
func TestTLSEffectiveRoundTrips(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "a", "x.test", testpki.Options{})
	cfg, err := loadText(t, dir, tlsPool+`
[pool.p.tls]
server_name = "api.internal"
ca = "ca.pem"
alpn = ["http/1.1"]
`+tlsVS+`mode = "http"
[virtual_server.tls]
certificates = [{ cert = "a.pem", key = "a.key" }]
client_auth = "request"
client_ca = "ca.pem"
[[virtual_server]]
name = "acme"
listen = "127.0.0.1:0"
pool = "p"
[virtual_server.tls]
acme = { domains = ["x.test"], challenges = ["http-01"] }
`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Effective(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out = strings.Replace(out, "[tcp_profile.tcp]", "[tcp_profile.root_copy]", 1)
	again, err := Parse([]byte(out))
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

func TestHSTSTableSetsHeaderValueWithDefaults(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir})
	leaf(t, ca, "a", "x.test", testpki.Options{})
	base := tlsPool + tlsVS + "mode = \"http\"\n[virtual_server.tls]\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n"
	cases := []struct {
		name, table string
		want        string // "" = no hsts
	}{
		{"off without the table", "", ""},
		{"empty table: two years", "[virtual_server.tls.hsts]\n", "max-age=63072000"},
		{"max_age in hours", "[virtual_server.tls.hsts]\nmax_age = \"8760h\"\n", "max-age=31536000"},
		{"zero max_age backs HSTS out", "[virtual_server.tls.hsts]\nmax_age = \"0s\"\n", "max-age=0"},
		{"include_subdomains", "[virtual_server.tls.hsts]\ninclude_subdomains = true\n", "max-age=63072000; includeSubDomains"},
		{"preload", "[virtual_server.tls.hsts]\ninclude_subdomains = true\npreload = true\n", "max-age=63072000; includeSubDomains; preload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadText(t, dir, base+tc.table)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.VirtualServers[0].TLS
			if !got.OCSPStapling {
				t.Errorf("ocsp_stapling must default to true")
			}
			switch {
			case tc.want == "" && got.HSTS != nil:
				t.Errorf("hsts = %+v, want off", got.HSTS)
			case tc.want != "" && got.HSTS == nil:
				t.Errorf("hsts off, want %q", tc.want)
			case tc.want != "" && got.HSTS.Value() != tc.want:
				t.Errorf("header value %q, want %q", got.HSTS.Value(), tc.want)
			}
			out, err := Effective(cfg)
			if err != nil {
				t.Fatal(err)
			}
			out = strings.Replace(out, "[tcp_profile.tcp]", "[tcp_profile.root_copy]", 1)
			again, err := Parse([]byte(out))
			if err != nil {
				t.Fatalf("effective config does not load: %v\n%s", err, out)
			}
			if a := again.VirtualServers[0].TLS; !reflect.DeepEqual(a.HSTS, got.HSTS) || a.OCSPStapling != got.OCSPStapling {
				t.Errorf("hsts differs after round trip: %+v vs %+v", a.HSTS, got.HSTS)
			}
		})
	}
}
