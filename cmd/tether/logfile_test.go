package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logrotate's pattern: rename, then reopen; lines written before the
// reopen are in the renamed file, lines after it in a new file at the path.
func TestLogFileReopenAfterRenameWritesToTheNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tether.log")
	lf, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&^logFileMode != 0 {
		t.Errorf("new log file: %v %v, want at most %o", fi.Mode(), err, logFileMode)
	}
	fmt.Fprintln(lf, "one")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(lf, "two") // still the old file: logrotate's window
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(lf, "three")
	if err := lf.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path+".1"); got != "one\ntwo\n" {
		t.Errorf("rotated file %q, want the lines before the reopen", got)
	}
	if got := readFile(t, path); got != "three\n" {
		t.Errorf("new file %q, want the line after the reopen", got)
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Write([]byte("late\n")); err == nil {
		t.Error("a write after Close succeeded")
	}
}

// The file is opened for appending: a restart does not truncate it.
func TestLogFileAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tether.log")
	for _, line := range []string{"a\n", "b\n"} {
		lf, err := openLogFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = lf.Write([]byte(line))
		_ = lf.Close()
	}
	if got := readFile(t, path); got != "a\nb\n" {
		t.Errorf("%q, want both lines", got)
	}
}

// A reopen that fails (the directory is gone) keeps the old file in use.
func TestLogFileReopenFailureKeepsTheOldFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tether.log")
	lf, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	moved := dir + ".old"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := lf.Reopen(); err == nil {
		t.Fatal("Reopen in a missing directory succeeded")
	}
	fmt.Fprintln(lf, "still here")
	if got := readFile(t, filepath.Join(moved, "tether.log")); got != "still here\n" {
		t.Errorf("old file %q, want the line written after the failed reopen", got)
	}
}

// Lines written while reopens happen are each whole, in one file or the
// other, and none is lost.
func TestLogFileReopenUnderConcurrentWritesLosesNoLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tether.log")
	lf, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	const writers, lines = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(lf, "writer %d line %d %s\n", w, i, strings.Repeat("x", 100))
			}
		}()
	}
	var rotated []string
	for i := range 5 {
		name := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, name); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, name)
		if err := lf.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, name := range append(rotated, path) {
		for _, line := range strings.Split(strings.TrimSuffix(readFile(t, name), "\n"), "\n") {
			if line == "" {
				continue
			}
			if !strings.HasPrefix(line, "writer ") || !strings.HasSuffix(line, strings.Repeat("x", 100)) || seen[line] {
				t.Fatalf("%s: torn or repeated line %q", name, line)
			}
			seen[line] = true
		}
	}
	if len(seen) != writers*lines {
		t.Errorf("%d lines across the files, want %d", len(seen), writers*lines)
	}
}

// loggingTether is the real binary running with [log] file set, a tcp
// virtual server in front of an echo member and no admin API.
type loggingTether struct {
	proc    *binaryProcess
	listen  string
	logPath string
	stderr  *syncBuffer
}

func startLoggingTether(t *testing.T) *loggingTether {
	t.Helper()
	member := socktest.Start(t, socktest.Echo)
	lt := &loggingTether{listen: socktest.FreeAddr(t)}
	dir := t.TempDir()
	lt.logPath = filepath.Join(dir, "tether.log")
	cfg := fmt.Sprintf(`
[log]
file = "tether.log"
[admin]
listen = "off"
[pool.p]
members = [{ address = %q }]
[[virtual_server]]
name = "vs"
listen = %q
pool = "p"
[global]
shutdown_timeout = "2s"
`, member.Addr(), lt.listen)
	cfgPath := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lt.proc = startBinary(t, cfgPath)
	lt.stderr = lt.proc.stderr
	socktest.WaitFor(t, 10*time.Second, "the started line in log.file", fileHas(lt.logPath, `"msg":"started"`))
	return lt
}

func fileHas(path, s string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), s)
	}
}

// echoOnce makes one connection through the virtual server (one access line).
func (lt *loggingTether) echoOnce(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", lt.listen, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through tether: %q %v", buf, err)
	}
}

// checkRotated stops tether and checks the files: the rotated one has the
// lines of before the reopen only, the new one the rest, all whole JSON,
// and nothing went to stderr.
func (lt *loggingTether) checkRotated(t *testing.T, rotated string) {
	t.Helper()
	lt.proc.stop()
	old, now := readFile(t, rotated), readFile(t, lt.logPath)
	if !strings.Contains(old, `"msg":"started"`) || strings.Contains(old, `"log":"access"`) || strings.Contains(old, "reopened") {
		t.Errorf("the rotated file has lines of after the reopen:\n%s", old)
	}
	if !strings.Contains(now, `"msg":"stopped"`) || !strings.Contains(now, `"log":"access"`) {
		t.Errorf("the new file lacks the access or the stopped line:\n%s", now)
	}
	for _, f := range []string{old, now} {
		for _, line := range strings.Split(strings.TrimSuffix(f, "\n"), "\n") {
			if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
				t.Errorf("a log line that is not whole JSON: %q", line)
			}
		}
	}
	if s := lt.stderr.String(); s != "" {
		t.Errorf("with log.file set, tether wrote to stderr:\n%s", s)
	}
}

// The real binary with [log] file: logs go to the file, not stderr; after
// logrotate's rename and SIGUSR1, new lines (an access line) go to a new
// file at the path and the renamed file gets nothing more.
func TestBinaryReopensTheLogFileOnSIGUSR1(t *testing.T) {
	lt := startLoggingTether(t)
	if fi, err := os.Stat(lt.logPath); err != nil || fi.Mode().Perm()&^0o640 != 0 {
		t.Errorf("log file mode %v %v, want at most 0640", fi.Mode(), err)
	}
	if err := os.Rename(lt.logPath, lt.logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := lt.proc.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	socktest.WaitFor(t, 10*time.Second, "the reopened line in a new log.file", fileHas(lt.logPath, "log file reopened"))
	lt.echoOnce(t)
	socktest.WaitFor(t, 10*time.Second, "the access line in the new log.file", fileHas(lt.logPath, `"log":"access"`))
	lt.checkRotated(t, lt.logPath+".1")
}

// examples/tether.logrotate, run by the real logrotate against the real
// binary (its path and postrotate signal pointed at them): the file is
// rotated and tether writes on in a new one.
func TestLogrotateExampleRotatesTheRunningBinary(t *testing.T) {
	logrotate := socktest.Need(t, "logrotate", "logrotate")
	lt := startLoggingTether(t)
	text, err := os.ReadFile("../../examples/tether.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	const path, signal = "/var/log/tether/tether.log {", "systemctl kill --signal=USR1 --kill-whom=main tether.service"
	for _, s := range []string{path, signal} {
		if !strings.Contains(string(text), s) {
			t.Fatalf("examples/tether.logrotate lacks %q (the test points it at the test's file and process)", s)
		}
	}
	conf := filepath.Join(t.TempDir(), "tether.logrotate")
	local := strings.NewReplacer(path, lt.logPath+" {", signal, fmt.Sprintf("kill -USR1 %d", lt.proc.cmd.Process.Pid)).Replace(string(text))
	if err := os.WriteFile(conf, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if out, err := exec.Command(logrotate, "--force", "--state", state, conf).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	socktest.WaitFor(t, 10*time.Second, "the reopened line in a new log.file", fileHas(lt.logPath, "log file reopened"))
	lt.echoOnce(t)
	socktest.WaitFor(t, 10*time.Second, "the access line in the new log.file", fileHas(lt.logPath, `"log":"access"`))
	lt.checkRotated(t, lt.logPath+".1") // delaycompress: .1 is not compressed yet
}

// SIGUSR1 without a log file does not kill tether (its default action
// would); run logs it and goes on.
func TestSIGUSR1WithoutLogFileIsHarmless(t *testing.T) {
	var out syncBuffer
	logger, err := newLogger(config.Log{Level: "info", Format: "json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	stop := reopenOnSIGUSR1(nil, logger)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	socktest.WaitFor(t, 5*time.Second, "the SIGUSR1 log line", func() bool {
		return strings.Contains(out.String(), "no log.file to reopen")
	})
}

// A reopen that fails on SIGUSR1 is logged, to the old file, which stays
// in use.
func TestSIGUSR1ReopenFailureIsLoggedToTheOldFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	lf, err := openLogFile(filepath.Join(dir, "tether.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	logger, err := newLogger(config.Log{Level: "info", Format: "json"}, lf)
	if err != nil {
		t.Fatal(err)
	}
	stop := reopenOnSIGUSR1(lf, logger)
	defer stop()
	moved := dir + ".old"
	if err := os.Rename(dir, moved); err != nil { // the path's directory is gone
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	oldPath := filepath.Join(moved, "tether.log")
	socktest.WaitFor(t, 5*time.Second, "the reopen failure in the old file", func() bool {
		b, _ := os.ReadFile(oldPath)
		return strings.Contains(string(b), "cannot reopen the log file")
	})
	logger.Info("after")
	if got := readFile(t, oldPath); !strings.Contains(got, `"msg":"after"`) {
		t.Errorf("a line after the failed reopen is not in the old file:\n%s", got)
	}
}

// A log file that cannot be opened stops run before anything listens.
func TestRunFailsWhenTheLogFileCannotBeOpened(t *testing.T) {
	path := writeConfig(t, "[log]\nfile = \"no/such/dir/tether.log\"\n"+goodConfig)
	code, _, errOut := runCLI("run", "-c", path)
	if code != exitError || !strings.Contains(errOut, "log: file: open ") || !strings.Contains(errOut, "no such file or directory") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
