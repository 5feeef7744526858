package certs

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// OpenSSL, a client Go did not write, tries every TLS 1.2 suite it knows
// one at a time against the defaults: only the ECDHE + AEAD suites of the
// certificate's key type complete a handshake (the check testssl.sh makes
// when it lists the suites offered). It also finds P-521 refused and
// X25519 accepted.
func TestOpenSSLFindsOnlyAEADSuitesOffered(t *testing.T) {
	openssl := socktest.Need(t, "openssl", "openssl")
	dir := t.TempDir()
	ca := testpki.NewCA(t, testpki.CAOptions{Dir: dir, Name: "openssl-ca"})
	ca.Issue(t, "ec", "ec.tether.test", testpki.Options{})
	ca.Issue(t, "rsa", "rsa.tether.test", testpki.Options{RSA: true})
	vs, _ := loadTLS(t, dir, `certificates = [{ cert = "ec.pem", key = "ec.key" }, { cert = "rsa.pem", key = "rsa.key" }]`, "")
	m, _ := newManager(t, vs)
	srv := serveTLS(t, m.TLSConfig(), echo)

	// sClient runs one TLS 1.2 (or 1.3) handshake and reports whether it
	// completed; a handshake that fails makes s_client exit non-zero.
	sClient := func(args ...string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		argv := append([]string{"s_client", "-connect", srv.addr, "-brief"}, args...)
		cmd := exec.CommandContext(ctx, openssl, argv...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("openssl %s: timed out: %s", strings.Join(argv, " "), out)
		}
		return err == nil && strings.Contains(string(out), "CONNECTION ESTABLISHED")
	}
	list, err := exec.Command(openssl, "ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Fatalf("openssl ciphers: %v", err)
	}
	want := map[string][]string{
		"ec.tether.test":  {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"},
		"rsa.tether.test": {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"},
	}
	tried := 0
	for sni, accept := range want {
		var got []string
		for _, c := range strings.Split(strings.TrimSpace(string(list)), ":") {
			// TLS 1.3 names (TLS_...) are not TLS 1.2 suites; PSK and SRP
			// suites need what no certificate server offers.
			if strings.HasPrefix(c, "TLS_") || strings.Contains(c, "PSK") || strings.Contains(c, "SRP") {
				continue
			}
			tried++
			if sClient("-tls1_2", "-servername", sni, "-cipher", c+":@SECLEVEL=0") {
				got = append(got, c)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, accept) {
			t.Errorf("%s: TLS 1.2 suites that complete a handshake = %q, want %q", sni, got, accept)
		}
	}
	if tried < 20 {
		t.Fatalf("openssl listed only %d TLS 1.2 suites to try: %s", tried, list)
	}
	if sClient("-servername", "ec.tether.test", "-groups", "P-521") {
		t.Error("a client offering only P-521 completed a handshake")
	}
	if !sClient("-servername", "ec.tether.test", "-groups", "X25519") {
		t.Error("a client offering only X25519 was refused")
	}
}
