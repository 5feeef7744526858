package socktest

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBackendCountsAndEchoes(t *testing.T) {
	b := Start(t, Echo)
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	WaitFor(t, 5*time.Second, "one open conn", func() bool { return b.Open() == 1 })
	if b.Accepted() != 1 || b.Peak() != 1 {
		t.Fatalf("accepted %d peak %d, want 1 and 1", b.Accepted(), b.Peak())
	}
	b.CloseConns()
	if _, err := c.Read(buf); err == nil {
		t.Fatal("read after CloseConns: want EOF or reset")
	}
	WaitFor(t, 5*time.Second, "no open conn", func() bool { return b.Open() == 0 })
}

func TestDeadAddrRefuses(t *testing.T) {
	_, err := net.DialTimeout("tcp", DeadAddr(t), 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial = %v, want connection refused", err)
	}
}

func TestWaitForFailsAfterItsBound(t *testing.T) {
	ft := runFake(t, func(ft *fakeT) {
		WaitFor(ft, 30*time.Millisecond, "never", func() bool { return false })
	})
	if !ft.failed {
		t.Fatal("WaitFor returned without failing for a condition that never holds")
	}
}

// runFake runs f with a fakeT in a goroutine of its own (Fatalf and Skipf
// end it, as testing.T's do) and returns the fakeT once f is over.
func runFake(t *testing.T, f func(*fakeT)) *fakeT {
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ft)
	}()
	<-done
	return ft
}

// fakeT records Fatalf and ends the goroutine as testing.T does.
type fakeT struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}
func (f *fakeT) Skipf(string, ...any) {
	f.skipped = true
	runtime.Goexit()
}

func TestNeedFindsAProgramAndFailsInCIWithoutOne(t *testing.T) {
	if got := Need(t, "sh", "dash"); got == "" {
		t.Fatal("Need(sh) returned no path")
	}
	t.Setenv("CI", "true")
	ft := runFake(t, func(ft *fakeT) { Need(ft, "tether-no-such-program", "none") })
	if !ft.failed {
		t.Fatal("Need of a missing program under CI did not fail the test")
	}
}

func TestMissingSkipsLocallyAndFailsInCI(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		ft := runFake(t, func(ft *fakeT) { Missing(ft, "no %s here", "pty") })
		if ci == "" && (!ft.skipped || ft.failed) {
			t.Errorf("without CI: skipped %v, failed %v; want a skip", ft.skipped, ft.failed)
		}
		if ci != "" && (!ft.failed || ft.skipped) {
			t.Errorf("under CI: skipped %v, failed %v; want a failure", ft.skipped, ft.failed)
		}
	}
}
