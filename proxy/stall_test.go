package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A client that asks for a large response and never reads (its window
// stays at zero: the kernel's window probes are answered, so neither
// keepalive nor, without user_timeout, the kernel ends the conn) is ended
// by the idle timeout, as a tcp relay is, and the member conn that carried
// the unfinished response is discarded, not pooled.
func TestHTTPClientThatNeverReadsEndsAtTheIdleTimeout(t *testing.T) {
	const size = 16 << 20
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		_, _ = io.CopyN(w, zeros{}, size)
	}, nil)
	p := startProxy(t, tcpConfig(idleProfiles, "mode = \"http\"\nclient_profile = \"short\"\n", "", be.Addr()))
	d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 2048) })
	}}
	c, err := d.Dial("tcp", p.addr("vs"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	lines := p.waitAccess(t, 1)
	took := time.Since(start)
	if took > 2*time.Second {
		t.Errorf("the stalled response ended after %s, idle timeout 400ms", took)
	}
	if e := fieldString(lines[0], "error"); e == "" {
		t.Errorf("access line has no error: %v", lines[0].ContextMap())
	}
	st := p.srv.VirtualServer("vs").ReuseStats()
	if len(st) != 1 || st[0].Discarded != 1 || st[0].Idle != 0 {
		t.Errorf("the member conn of the unfinished response was not discarded: %+v", st)
	}
	t.Logf("ended after %s", took)
}
