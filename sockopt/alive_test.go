package sockopt

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestAliveOnHealthyIdleConn(t *testing.T) {
	c, _ := pair(t, config.DefaultProfile())
	for range 3 { // repeatable: nothing is consumed or changed
		if err := Alive(c); err != nil {
			t.Fatalf("Alive = %v, want nil", err)
		}
	}
}

func TestAliveReportsPeerCloseAsStale(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	peer.Close()
	var err error
	socktest.WaitFor(t, 5*time.Second, "Alive to see the FIN", func() bool { err = Alive(c); return err != nil })
	if !errors.Is(err, ErrStale) || !errors.Is(err, io.EOF) {
		t.Errorf("Alive = %v, want ErrStale wrapping io.EOF", err)
	}
}

func TestAliveReportsPeerResetAsStale(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	if err := Close(peer, config.CloseReset, 0); err != nil {
		t.Fatal(err)
	}
	var err error
	socktest.WaitFor(t, 5*time.Second, "Alive to see the RST", func() bool { err = Alive(c); return err != nil })
	if !errors.Is(err, ErrStale) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Alive = %v, want ErrStale wrapping ECONNRESET", err)
	}
}

func TestAliveReportsUnexpectedDataWithoutConsumingIt(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var err error
	socktest.WaitFor(t, 5*time.Second, "Alive to see the data", func() bool { err = Alive(c); return err != nil })
	if !errors.Is(err, ErrStale) || errors.Is(err, io.EOF) {
		t.Errorf("Alive = %v, want ErrStale (unexpected data)", err)
	}
	// All five bytes are still there.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Errorf("after Alive, read %q, %v; want \"hello\"", buf, err)
	}
	if err := Alive(c); err != nil {
		t.Errorf("Alive after reading the data = %v, want nil", err)
	}
}

// TestAliveIgnoresDeadlinesAndConcurrentReaders: Alive peeks through
// RawConn.Control, so an expired read deadline left on an idle conn does not
// read as stale, and a reader blocked in Read does not block Alive.
func TestAliveIgnoresDeadlinesAndConcurrentReaders(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if err := Alive(c); err != nil {
		t.Errorf("Alive with an expired read deadline = %v, want nil", err)
	}
	c.SetReadDeadline(time.Time{})

	readDone := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		readDone <- err
	}()
	aliveDone := make(chan error, 1)
	go func() { aliveDone <- Alive(c) }()
	select {
	case err := <-aliveDone:
		if err != nil {
			t.Errorf("Alive with a blocked reader = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Alive blocked behind a concurrent Read")
		peer.Write([]byte{1}) // unblock the reader, then Alive
		<-aliveDone
	}
	peer.Write([]byte{1})
	if err := <-readDone; err != nil {
		t.Errorf("reader: %v", err)
	}
}

func TestAliveOnClosedConnIsNotStale(t *testing.T) {
	c, _ := pair(t, config.DefaultProfile())
	c.Close()
	if err := Alive(c); !errors.Is(err, net.ErrClosed) || errors.Is(err, ErrStale) {
		t.Errorf("Alive on a closed conn = %v, want net.ErrClosed", err)
	}
}

// TestAliveDoesNotAllocate: Alive runs before every reuse of a pooled
// connection, on the http path that must not allocate per request.
func TestAliveDoesNotAllocate(t *testing.T) {
	c, _ := pair(t, config.DefaultProfile())
	if allocs := testing.AllocsPerRun(100, func() {
		if err := Alive(c); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("Alive allocates %v times per call, want 0", allocs)
	}
}
