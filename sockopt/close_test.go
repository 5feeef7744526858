package sockopt

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// sides runs f once with the dialed conn closing first and once with the
// accepted one, as tether closes both client-side and server-side conns.
func sides(t *testing.T, p config.TCPProfile, f func(t *testing.T, closer, peer *net.TCPConn)) {
	for _, side := range []string{"dialed", "accepted"} {
		t.Run(side+" closes", func(t *testing.T) {
			dialed, accepted := pair(t, p)
			if side == "dialed" {
				f(t, dialed, accepted)
			} else {
				f(t, accepted, dialed)
			}
		})
	}
}

// readErr reads c until an error and returns it, failing after 5 s.
func readErr(t *testing.T, c *net.TCPConn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy reports EOF as nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer saw neither EOF nor reset within 5 s")
	}
	return err
}

func TestResetCloseSendsRSTAndLeavesNoTimeWait(t *testing.T) {
	sides(t, config.DefaultProfile(), func(t *testing.T, closer, peer *net.TCPConn) {
		tu := tupleOf(closer)
		if got := statesOf(t, tu); !slices.Equal(got, []State{StateEstablished}) {
			t.Fatalf("before close: %v is %v, want [ESTABLISHED]", tu, got)
		}
		if err := Close(closer, config.CloseReset, 0); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := readErr(t, peer); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("peer read: %v, want ECONNRESET", err)
		}
		// The RST freed the closing socket at once: no TIME_WAIT, no state at all.
		if got := statesOf(t, tu); len(got) != 0 {
			t.Errorf("after reset: %v is %v, want no socket", tu, got)
		}
	})
}

func TestGracefulCloseLeavesTimeWaitOnTheSideThatClosedFirst(t *testing.T) {
	sides(t, config.DefaultProfile(), func(t *testing.T, first, second *net.TCPConn) {
		firstTu, secondTu := tupleOf(first), tupleOf(second)
		if err := Close(first, config.CloseGraceful, 0); err != nil {
			t.Fatalf("Close first: %v", err)
		}
		if err := readErr(t, second); err != io.EOF {
			t.Fatalf("second side read: %v, want EOF", err)
		}
		if err := Close(second, config.CloseGraceful, 0); err != nil {
			t.Fatalf("Close second: %v", err)
		}
		socktest.WaitFor(t, 5*time.Second, "TIME_WAIT on the first closer and nothing on the second", func() bool {
			return slices.Equal(statesOf(t, firstTu), []State{StateTimeWait}) && len(statesOf(t, secondTu)) == 0
		})
	})
}

// transfer is what a peer saw of a stream: bytes, checksum, final error.
type transfer struct {
	n   int64
	sum [32]byte
	err error
}

// readAll reads c to its end after first reading pauseAt bytes and waiting
// for resume. It gives up after 20 s.
func readAll(c *net.TCPConn, pauseAt int64, resume <-chan struct{}) transfer {
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(c, pauseAt))
	if err == nil {
		<-resume
		var m int64
		m, err = io.Copy(h, c)
		n += m
		if err == nil {
			err = io.EOF
		}
	}
	var tr transfer
	tr.n, tr.err = n, err
	copy(tr.sum[:], h.Sum(nil))
	return tr
}

// TestDrainResetDeliversEverythingThenResets writes 8 MiB and closes while
// the last 256 KiB still sit in the closer's send queue behind a paused
// reader with a 16 KiB receive buffer. drain-reset must deliver all of it
// (checksum), then reset, leaving no TIME_WAIT. The same run with plain reset
// is the control: it loses data, so the drain test cannot pass by luck.
func TestDrainResetDeliversEverythingThenResets(t *testing.T) {
	const total = 8 << 20
	const tail = 256 << 10
	data := make([]byte, total)
	rand.NewChaCha8([32]byte{1}).Read(data)
	want := sha256.Sum256(data)

	for _, mode := range []config.CloseMode{config.CloseDrainReset, config.CloseReset} {
		t.Run(string(mode), func(t *testing.T) {
			lp := config.DefaultProfile()
			lp.SendBuffer = 1 << 20 // the closer's queue holds the tail
			dp := config.DefaultProfile()
			dp.RecvBuffer = 16 << 10 // the peer's window is small
			ln := listen(t, lp)
			peer, closer := connect(t, ln, dp)
			if err := Apply(peer, dp); err != nil {
				t.Fatal(err)
			}
			if err := Apply(closer, lp); err != nil {
				t.Fatal(err)
			}
			tu := tupleOf(closer)

			resume := make(chan struct{})
			got := make(chan transfer, 1)
			go func() { got <- readAll(peer, total-tail, resume) }()

			if _, err := closer.Write(data); err != nil {
				close(resume)
				<-got
				t.Fatalf("write: %v", err)
			}
			queued, err := OutQueue(closer)
			if err != nil || queued == 0 {
				close(resume)
				<-got
				t.Fatalf("OutQueue before close = %d, %v; want > 0 (the test needs a queue to drain)", queued, err)
			}
			// drain-reset needs the peer reading while it drains; the reset
			// control closes first, so the queued tail is provably still
			// unsent when the RST goes out.
			if mode == config.CloseDrainReset {
				close(resume)
			}
			start := time.Now()
			closeErr := Close(closer, mode, 10*time.Second)
			elapsed := time.Since(start)
			if mode == config.CloseReset {
				close(resume)
			}
			tr := <-got
			t.Logf("%s: %d bytes queued at close, close took %v, peer read %d bytes then %v", mode, queued, elapsed, tr.n, tr.err)

			if !errors.Is(tr.err, syscall.ECONNRESET) {
				t.Errorf("peer's last read: %v, want ECONNRESET", tr.err)
			}
			if got := statesOf(t, tu); len(got) != 0 {
				t.Errorf("closer %v is %v after close, want no socket (no TIME_WAIT)", tu, got)
			}
			switch mode {
			case config.CloseDrainReset:
				if closeErr != nil {
					t.Errorf("Close: %v", closeErr)
				}
				if tr.n != total || !bytes.Equal(tr.sum[:], want[:]) {
					t.Errorf("peer got %d bytes (checksum match %v), want all %d", tr.n, tr.sum == want, total)
				}
			case config.CloseReset:
				if tr.n >= total {
					t.Errorf("control: plain reset delivered all %d bytes; the drain test proves nothing", tr.n)
				}
			}
		})
	}
}

// TestDrainResetIsBoundedByDrainTimeout closes a conn whose peer never reads:
// the queue can never empty, so Close must give up at drainTimeout, reset,
// and say data was discarded.
func TestDrainResetIsBoundedByDrainTimeout(t *testing.T) {
	lp := config.DefaultProfile()
	lp.RecvBuffer = 16 << 10
	dp := config.DefaultProfile()
	dp.SendBuffer = 64 << 10
	ln := listen(t, lp)
	closer, peer := connect(t, ln, dp)

	// Fill the send queue: the write stops when both buffers are full.
	closer.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	written, err := closer.Write(make([]byte, 8<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a peer that never reads: %d bytes, %v; want a deadline error", written, err)
	}
	if q, err := OutQueue(closer); err != nil || q == 0 {
		t.Fatalf("OutQueue = %d, %v; want > 0", q, err)
	}
	tu := tupleOf(closer)

	const drainTimeout = 400 * time.Millisecond
	start := time.Now()
	err = Close(closer, config.CloseDrainReset, drainTimeout)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUndelivered) {
		t.Errorf("Close = %v, want ErrUndelivered", err)
	}
	if elapsed < drainTimeout || elapsed > drainTimeout+1500*time.Millisecond {
		t.Errorf("Close took %v, want between %v and %v", elapsed, drainTimeout, drainTimeout+1500*time.Millisecond)
	}
	if err := readErr(t, peer); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read: %v, want ECONNRESET", err)
	}
	if got := statesOf(t, tu); len(got) != 0 {
		t.Errorf("closer %v is %v after close, want no socket", tu, got)
	}
}

func TestDrainResetWithEmptyQueueResetsAtOnce(t *testing.T) {
	closer, peer := pair(t, config.DefaultProfile())
	start := time.Now()
	if err := Close(closer, config.CloseDrainReset, 10*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Close with nothing queued took %v", elapsed)
	}
	if err := readErr(t, peer); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read: %v, want ECONNRESET", err)
	}
}

func TestDrainResetStopsWhenPeerResets(t *testing.T) {
	lp := config.DefaultProfile()
	lp.RecvBuffer = 16 << 10
	ln := listen(t, lp)
	closer, peer := connect(t, ln, config.DefaultProfile())
	closer.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	closer.Write(make([]byte, 4<<20))
	if q, err := OutQueue(closer); err != nil || q == 0 {
		t.Fatalf("OutQueue = %d, %v; want > 0", q, err)
	}
	// The peer goes away with a reset: nothing will ever be acknowledged.
	if err := Close(peer, config.CloseReset, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := Close(closer, config.CloseDrainReset, 10*time.Second)
	if !errors.Is(err, ErrUndelivered) {
		t.Errorf("Close = %v, want ErrUndelivered", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Close waited %v for a dead connection", elapsed)
	}
}

func TestCloseRejectsUnknownModeButCloses(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	if err := Close(c, "linger-forever", 0); err == nil {
		t.Error("Close with an unknown mode returned nil")
	}
	if err := readErr(t, peer); err != io.EOF {
		t.Errorf("peer read: %v, want EOF (graceful)", err)
	}
	if err := Close(nil, config.CloseReset, 0); !errors.Is(err, ErrNilConn) {
		t.Errorf("Close(nil) = %v", err)
	}
	if err := Close(c, config.CloseReset, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Close of a closed conn = %v, want net.ErrClosed", err)
	}
}
