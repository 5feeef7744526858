package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// unitService reads the [Service] keys of a systemd unit file; a key given
// more than once (ExecReload) has its values joined by "\n", in order.
func unitService(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not key=value", path, line)
			}
			if prev, ok := keys[k]; ok {
				v = prev + "\n" + v
			}
			keys[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// examples/tether.service checks the config before it starts the proxy,
// with the same binary and file, checks it again before a reload's SIGHUP,
// can write its log file under /var/log/tether, gives the drain its
// time, follows the new main PID of a hot upgrade (PIDFile= is the file
// run --pid-file writes, in its RuntimeDirectory), and passes
// systemd-analyze verify with the binary path pointed at a build (its
// ExecStartPre line, run as is, accepts the example config).
func TestSystemdUnitExample(t *testing.T) {
	const unit = "../../examples/tether.service"
	keys := unitService(t, unit)
	start := strings.Fields(keys["ExecStart"])
	pre := strings.Fields(keys["ExecStartPre"])
	if len(start) != 6 || start[1] != "run" || start[2] != "-c" || start[4] != "--pid-file" {
		t.Fatalf("ExecStart = %q, want BIN run -c FILE --pid-file PIDFILE", keys["ExecStart"])
	}
	if keys["PIDFile"] != start[5] || filepath.Dir(start[5]) != "/run/"+keys["RuntimeDirectory"] {
		t.Errorf("PIDFile = %q, RuntimeDirectory = %q: want the --pid-file %q, in /run/RuntimeDirectory", keys["PIDFile"], keys["RuntimeDirectory"], start[5])
	}
	if len(pre) != 4 || pre[0] != start[0] || pre[1] != "check" || pre[2] != "-c" || pre[3] != start[3] {
		t.Fatalf("ExecStartPre = %q, want %s check -c %s", keys["ExecStartPre"], start[0], start[3])
	}
	// Reload: check the file first (systemd stops at a failing line), then
	// SIGHUP to the main process.
	if reload := strings.Split(keys["ExecReload"], "\n"); len(reload) != 2 || reload[0] != keys["ExecStartPre"] || !strings.Contains(reload[1], "-HUP $MAINPID") {
		t.Errorf("ExecReload = %q, want %q, then a SIGHUP to the main process", reload, keys["ExecStartPre"])
	}
	if keys["LogsDirectory"] != "tether" {
		t.Errorf("LogsDirectory = %q: [log] file under /var/log/tether needs it (ProtectSystem=strict)", keys["LogsDirectory"])
	}
	if stop, err := time.ParseDuration(keys["TimeoutStopSec"]); err != nil || stop < config.DefaultShutdownTimeout+5*time.Second {
		t.Errorf("TimeoutStopSec = %q: want room for the %v drain", keys["TimeoutStopSec"], config.DefaultShutdownTimeout)
	}
	if keys["LimitNOFILE"] == "" || keys["DynamicUser"] != "yes" {
		t.Errorf("LimitNOFILE = %q, DynamicUser = %q", keys["LimitNOFILE"], keys["DynamicUser"])
	}

	analyze := socktest.Need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	bin := tetherBinary(t)
	cfg, err := filepath.Abs("../../examples/redis.toml")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "tether.service")
	if err := os.WriteFile(local, []byte(strings.NewReplacer(start[0], bin, start[3], cfg).Replace(string(text))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", local).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "check", "-c", cfg).CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre on the example config: %v\n%s", err, out)
	}
}
