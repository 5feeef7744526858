package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// testsslAllowed are the testssl.sh findings that come from the throwaway
// test certificate, not from tether, each with why: the finding's JSON id
// and its line in the text report (testssl prints "NOT ok" at every
// severity from LOW to CRITICAL, so the text is checked as well as the
// JSON ratings). Keep it to what a real certificate fixes.
//
// The chain of trust is not here: the test CA is handed to testssl with
// --add-ca, so a failing chain check fails the test.
var testsslAllowed = []struct {
	id   string
	line *regexp.Regexp
	why  string
}{
	{"cert_revocation", regexp.MustCompile(`NOT ok -- neither CRL nor OCSP URI provided`),
		"testpki's leaves name neither a CRL distribution point nor an OCSP responder; a public CA's do (rated HIGH)"},
	{"cert_serialNumberLen", regexp.MustCompile(`NOT ok: length should be >= 64 bits entropy`),
		"testpki numbers serials 1, 2, 3 so tests tell reissued leaves apart; a public CA's have >= 64 random bits (rated LOW)"},
}

// testsslAllows reports whether the finding id is in testsslAllowed. With
// several certificates testssl appends " <cert#N>" to a certificate's ids.
func testsslAllows(id string) bool {
	id, _, _ = strings.Cut(id, " ")
	for _, a := range testsslAllowed {
		if a.id == id {
			return true
		}
	}
	return false
}

// testsslFinding is one entry of testssl.sh's flat JSON output (--jsonfile).
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"` // OK, INFO, LOW, MEDIUM, HIGH, CRITICAL, WARN (a check that could not run)
	Finding  string `json:"finding"`
}

// testssl.sh (Debian's testssl, the tool an auditor runs) scans the real
// binary's TLS virtual servers, one per mode, with tether's TLS defaults:
// no CBC (or other non-AEAD) suite is offered, only TLS 1.2 and 1.3, and
// nothing is rated HIGH, CRITICAL or VULNERABLE except testsslAllowed. The
// http virtual server serves an ECDSA certificate, the tcp one an RSA
// certificate, so the suites of both key types are scanned.
func TestTLSDefaultsPassTestssl(t *testing.T) {
	testssl := socktest.Need(t, "testssl", "testssl.sh")
	if testing.Short() {
		t.Skip("testssl.sh takes about 30 s per virtual server")
	}
	ca := testpki.New(t)
	// 90 days, like a Let's Encrypt certificate: testssl rates a
	// certificate that expires within 30 days HIGH.
	notAfter := time.Now().Add(90 * 24 * time.Hour)
	ecdsaLeaf := ca.Issue(t, "ecdsa", "127.0.0.1", testpki.Options{NotAfter: notAfter, Names: []string{"localhost"}})
	rsaLeaf := ca.Issue(t, "rsa", "127.0.0.1", testpki.Options{NotAfter: notAfter, Names: []string{"localhost"}, RSA: true})

	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	t.Cleanup(member.Close)
	memberAddr := strings.TrimPrefix(member.URL, "http://")

	httpAddr, tcpAddr := socktest.FreeAddr(t), socktest.FreeAddr(t)
	cfg := fmt.Sprintf(`
[global]
shutdown_timeout = "2s"
[log]
level = "error"
access = false
[pool.web]
members = [ { address = %q } ]
[[virtual_server]]
name = "https"
listen = %q
mode = "http"
pool = "web"
[virtual_server.tls]
certificates = [ { cert = %q, key = %q } ]
[[virtual_server]]
name = "tls-tcp"
listen = %q
mode = "tcp"
pool = "web"
[virtual_server.tls]
certificates = [ { cert = %q, key = %q } ]
`, memberAddr, httpAddr, ecdsaLeaf.CertFile, ecdsaLeaf.KeyFile, tcpAddr, rsaLeaf.CertFile, rsaLeaf.KeyFile)
	proc := startBinary(t, writeConfig(t, cfg))
	for _, addr := range []string{httpAddr, tcpAddr} {
		socktest.WaitFor(t, 10*time.Second, "a TLS handshake on "+addr, func() bool {
			c, err := tls.Dial("tcp", addr, ca.ClientConfig("localhost"))
			if err != nil {
				return false
			}
			_ = c.Close()
			return true
		})
	}

	for _, vs := range []struct{ mode, addr string }{{"http", httpAddr}, {"tcp", tcpAddr}} {
		t.Run(vs.mode, func(t *testing.T) {
			t.Parallel()
			findings, report := runTestssl(t, testssl, ca.File, vs.addr)
			curves := ""
			for _, f := range findings {
				if f.ID == "PFS_ECDHE_curves" {
					curves = f.Finding
					t.Logf("curves offered: %s", f.Finding)
				}
			}
			// Mozilla intermediate's groups (OpenSSL's names; testssl 3.0
			// does not probe the post-quantum hybrid), and no other.
			if got := strings.Fields(curves); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"X25519", "prime256v1", "secp384r1"}) {
				t.Errorf("curves offered: %q, want X25519, prime256v1 and secp384r1 only", curves)
			}
			for _, p := range testsslProblems(findings) {
				t.Error(p)
			}
			for _, p := range testsslReportProblems(report) {
				t.Error(p)
			}
			if t.Failed() {
				t.Logf("testssl.sh report:\n%s\ntether's stderr:\n%s", report, proc.stderr.String())
			}
		})
	}
}

// runTestssl scans addr with testssl.sh and returns its JSON findings and
// its text report. The checks: protocols (-p), cipher categories (-s),
// forward secrecy and curves (-f), server defaults and the certificate
// (-S), every vulnerability (-U), each cipher per protocol (-E) and the
// HTTP headers (-h). Not run: server preference (-P), client simulation
// (-c) and the 370-cipher list (-e), which -E covers; with them a scan
// takes twice as long.
// Nothing leaves the machine: no DNS lookup (--nodns none on an IP
// address), no CRL or OCSP download (no --phone-out).
func runTestssl(t *testing.T, testssl, caFile, addr string) ([]testsslFinding, string) {
	t.Helper()
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "testssl.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testssl,
		"--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none",
		"--connect-timeout", "10", "--openssl-timeout", "10",
		"--add-ca", caFile, "--jsonfile", jsonFile,
		"-p", "-s", "-f", "-S", "-U", "-E", "-h",
		addr)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	// testssl.sh runs openssl and other children: a timeout ends them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	report := string(out)
	if err != nil {
		t.Fatalf("testssl %s after %v: %v\n%s", addr, time.Since(start).Round(time.Second), err, report)
	}
	t.Logf("testssl %s took %v", addr, time.Since(start).Round(time.Second))
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("testssl wrote no JSON: %v\n%s", err, report)
	}
	var findings []testsslFinding
	if err := json.Unmarshal(b, &findings); err != nil {
		t.Fatalf("testssl's JSON: %v\n%s", err, b)
	}
	return findings, report
}

// notVulnerable is the wording of a finding that is fine; what remains of
// a finding without it must not say "vulnerable" ("potentially
// VULNERABLE" is testssl's LUCKY13 verdict on CBC suites).
var (
	notVulnerable = regexp.MustCompile(`(?i)not vulnerable`)
	vulnerable    = regexp.MustCompile(`(?i)vulnerable`)
)

// aeadSuite matches the IANA names of AEAD suites.
var aeadSuite = regexp.MustCompile(`_(GCM|CCM|CCM_8|CHACHA20_POLY1305)_SHA\d+$`)

// testsslReportProblems returns the lines of testssl's text report (run
// with --color 0) that say NOT ok or VULNERABLE, other than those of
// testsslAllowed.
func testsslReportProblems(report string) []string {
	var problems []string
lines:
	for _, l := range strings.Split(report, "\n") {
		if !strings.Contains(l, "NOT ok") && !strings.Contains(l, "VULNERABLE") {
			continue
		}
		for _, a := range testsslAllowed {
			if a.line.MatchString(l) {
				continue lines
			}
		}
		problems = append(problems, "testssl.sh report: "+strings.TrimSpace(l))
	}
	return problems
}

// testsslProblems returns what an auditor would flag in findings, one
// line each.
func testsslProblems(findings []testsslFinding) []string {
	var problems []string
	byID := map[string]testsslFinding{}
	var tls12 int
	for _, f := range findings {
		byID[f.ID] = f
		switch {
		case testsslAllows(f.ID):
		case f.Severity == "HIGH" || f.Severity == "CRITICAL" || f.Severity == "WARN":
			problems = append(problems, fmt.Sprintf("%s rated %s: %s", f.ID, f.Severity, f.Finding))
		case vulnerable.MatchString(notVulnerable.ReplaceAllString(f.Finding, "")):
			problems = append(problems, fmt.Sprintf("%s (%s): %s", f.ID, f.Severity, f.Finding))
		}
		// Cipher categories: only "Strong encryption (AEAD ciphers)" may be
		// offered. cipherlist_AVERAGE is 3.0's "Obsolete CBC ciphers",
		// cipherlist_OBSOLETED 3.1's.
		if strings.HasPrefix(f.ID, "cipherlist_") && f.ID != "cipherlist_STRONG" && !strings.HasPrefix(f.Finding, "not offered") {
			problems = append(problems, fmt.Sprintf("%s offered (%s): %s", f.ID, f.Severity, f.Finding))
		}
		// -E: one entry per suite offered, as cipher-tls1_2_xc02b with the
		// IANA name last.
		if proto, ok := strings.CutPrefix(f.ID, "cipher-"); ok {
			fields := strings.Fields(f.Finding)
			name := ""
			if len(fields) > 0 {
				name = fields[len(fields)-1]
			}
			switch {
			case strings.HasPrefix(proto, "tls1_3_"):
			case strings.HasPrefix(proto, "tls1_2_"):
				tls12++
				if !aeadSuite.MatchString(name) {
					problems = append(problems, fmt.Sprintf("TLS 1.2 suite %s is not AEAD: %s", name, f.Finding))
				}
			default:
				problems = append(problems, fmt.Sprintf("suite offered below TLS 1.2: %s %s", f.ID, f.Finding))
			}
		}
	}
	for _, p := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
		if f, ok := byID[p]; ok && !strings.HasPrefix(f.Finding, "not offered") {
			problems = append(problems, fmt.Sprintf("%s: %s", p, f.Finding))
		}
	}
	for _, p := range []string{"TLS1_2", "TLS1_3"} {
		if f, ok := byID[p]; ok && !strings.HasPrefix(f.Finding, "offered") {
			problems = append(problems, fmt.Sprintf("%s: %s, want offered", p, f.Finding))
		}
	}
	// A scan that skipped its checks must not pass for a clean one.
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipherlist_STRONG",
		"cert_chain_of_trust", "heartbleed", "ROBOT", "LUCKY13", "SWEET32", "BREACH"} {
		if _, ok := byID[id]; !ok {
			problems = append(problems, "testssl reported no "+id)
		}
	}
	if tls12 == 0 {
		problems = append(problems, "testssl listed no TLS 1.2 suite (-E did not run?)")
	}
	return problems
}
