package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tether-test-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// Every example in examples/ passes `tether check`.
func TestEveryExamplePassesCheck(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.toml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		code, out, errOut := runCLI("check", "-c", f)
		if code != exitOK {
			t.Errorf("check %s: exit %d\n%s", f, code, errOut)
		}
		if !strings.Contains(out, ": ok") {
			t.Errorf("check %s: stdout %q", f, out)
		}
		if strings.Contains(errOut, "warning") {
			t.Errorf("example %s has warnings:\n%s", f, errOut)
		}
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tether.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodConfig = `
[tcp_profile.lan]
keepalive_idle = "60s"
user_timeout = "60s"
[pool.p]
members = [{ address = "127.0.0.1:6379" }]
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:0"
pool = "p"
client_profile = "lan"
`

func TestCheckPrintShowsResolvedProfiles(t *testing.T) {
	code, out, errOut := runCLI("check", "-c", writeConfig(t, goodConfig), "--print")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"[tcp_profile.lan]", `parent = "tcp"`, `keepalive_idle = "1m0s"`, `keepalive_interval = "1m15s"`, `idle_timeout = "5m0s"`} {
		if !strings.Contains(out, want) {
			t.Errorf("--print lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("a valid config without suspicious settings printed %q", errOut)
	}
	// A profile whose keepalive can never fire before its idle timeout warns.
	code, _, errOut = runCLI("check", "-c", writeConfig(t, goodConfig+`[tcp_profile.lan2]
keepalive_idle = "600s"
[[virtual_server]]
name = "vs2"
listen = "127.0.0.1:0"
pool = "p"
client_profile = "lan2"
`))
	if code != exitOK || !strings.Contains(errOut, `warning: tcp_profile "lan2"`) || !strings.Contains(errOut, "keepalive can never fire") {
		t.Errorf("want the keepalive warning for lan2, got exit %d %q", code, errOut)
	}
}

func TestCheckPrintDefaults(t *testing.T) {
	code, out, _ := runCLI("check", "--print-defaults")
	if code != exitOK || !strings.Contains(out, "[tcp_profile.tcp]") || !strings.Contains(out, "keepalive_probes = 9") ||
		!strings.Contains(out, "[virtual_server.http]") || !strings.Contains(out, `keepalive_timeout = "15s"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestBadConfigExitsNonZeroNamingTheKey(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"unknown key", goodConfig + "bogus = 1\n", `unknown key "virtual_server.bogus"`},
		{"bad duration", strings.Replace(goodConfig, `"60s"`, `"60 s"`, 1), `invalid duration "60 s"`},
		{"unknown profile", strings.Replace(goodConfig, `client_profile = "lan"`, `client_profile = "wan"`, 1), `client_profile "wan": is not defined`},
		{"unknown pool", strings.Replace(goodConfig, `pool = "p"`, `pool = "q"`, 1), `pool "q": is not defined`},
		{"parent cycle", goodConfig + "[tcp_profile.a]\nparent = \"b\"\n[tcp_profile.b]\nparent = \"a\"\n", "inheritance cycle"},
		{"overlapping listeners", strings.Replace(goodConfig, "127.0.0.1:0", "0.0.0.0:7", 1) + "[[virtual_server]]\nname = \"vs2\"\nlisten = \"127.0.0.1:7\"\npool = \"p\"\n",
			`virtual_server "vs2": listen "127.0.0.1:7": overlaps virtual_server "vs" (listen "0.0.0.0:7")`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			for _, cmd := range []string{"check", "run"} {
				code, _, errOut := runCLI(cmd, "-c", path)
				if code != exitError {
					t.Errorf("%s: exit %d, want %d", cmd, code, exitError)
				}
				if !strings.Contains(errOut, tc.want) {
					t.Errorf("%s: stderr %q does not contain %q", cmd, errOut, tc.want)
				}
			}
		})
	}
}

// TLS problems come out of `tether check` like the others: a certificate file
// named by its absolute path (relative to the config), a TLS warning as a
// warning with exit 0.
func TestCheckReportsTLSFilesAndWarnings(t *testing.T) {
	path := writeConfig(t, goodConfig+"[virtual_server.tls]\ncertificates = [{ cert = \"web.pem\", key = \"web.key\" }]\n")
	code, _, errOut := runCLI("check", "-c", path)
	want := `virtual_server "vs": tls: certificate 1: cert "` + filepath.Join(filepath.Dir(path), "web.pem") + `": cannot read it`
	if code != exitError || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q, want %q", code, errOut, want)
	}
	code, out, errOut := runCLI("check", "-c", writeConfig(t, goodConfig+"[pool.p.tls]\ninsecure_skip_verify = true\n"))
	if code != exitOK || !strings.Contains(out, "1 warnings") ||
		!strings.Contains(errOut, `warning: pool "p": tls: insecure_skip_verify: member certificates are NOT verified`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestRunFailsWhenPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := writeConfig(t, strings.Replace(goodConfig, "127.0.0.1:0", busy.Addr().String(), 1))
	code, _, errOut := runCLI("run", "-c", path)
	if code != exitError || !strings.Contains(errOut, "address already in use") || !strings.Contains(errOut, `virtual_server "vs"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, _ := runCLI(); code != exitUsage {
		t.Errorf("no command: exit %d", code)
	}
	if code, _, _ := runCLI("frobnicate"); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
	if code, _, _ := runCLI("check"); code != exitUsage {
		t.Errorf("check without -c: exit %d", code)
	}
	if code, out, _ := runCLI("version"); code != exitOK || !strings.HasPrefix(out, "tether ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}

// The real binary: SIGTERM stops accepting, drains and exits 0; SIGHUP does
// not kill it.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	member, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	listen := socktest.FreeAddr(t)
	cfg := strings.NewReplacer("127.0.0.1:6379", member.Addr().String(), "127.0.0.1:0", listen).Replace(goodConfig) +
		"[global]\nshutdown_timeout = \"2s\"\n"
	proc := startBinary(t, writeConfig(t, cfg))
	socktest.WaitFor(t, 10*time.Second, "tether listening", func() bool {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	proc.signal(syscall.SIGHUP)
	proc.stop() // wants exit 0
	stderr := proc.stderr
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line in the log:\n%s", stderr.String())
	}
}
