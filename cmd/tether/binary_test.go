package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the test binary, built once for every test that runs the
// real program (TestMain makes and removes it).
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binBuild []byte // go build's output when it failed
	binErr   error
)

// tetherBinary returns the path of ./cmd/tether built for this test run:
// the first caller builds it, the others wait for that build.
func tetherBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath = filepath.Join(binDir, "tether")
		binBuild, binErr = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("build: %v\n%s", binErr, binBuild)
	}
	return binPath
}

// binaryProcess is the real binary running `tether run -c FILE`, its
// stderr kept.
type binaryProcess struct {
	t       *testing.T
	cmd     *exec.Cmd
	stderr  *syncBuffer
	done    chan error
	stopped bool
}

// startBinary runs `tether run -c cfgPath`; the test's end stops it (stop).
func startBinary(t *testing.T, cfgPath string) *binaryProcess {
	t.Helper()
	p := &binaryProcess{t: t, cmd: exec.Command(tetherBinary(t), "run", "-c", cfgPath), stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(p.stop)
	return p
}

// signal sends sig to the process.
func (p *binaryProcess) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and wants exit status 0 within 10 s (else the process
// is killed and the test fails). Later calls do nothing.
func (p *binaryProcess) stop() {
	p.t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("exit: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("tether did not exit after SIGTERM\n%s", p.stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
