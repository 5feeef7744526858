package proxy

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// The idle-conn memory benchmarks open idleBenchConns conns, let them go
// idle (parked), and report per conn what tether's Go side holds after a
// GC. The same number of conns opened straight to a holder (no tether) is
// measured first in the same process and subtracted, so the figures leave
// out the test's own client and member sockets:
//
//   - heap-B/conn: live heap objects: the conn's structs, netFDs and
//     addresses, the registries (liveConns, the parker's table), and the
//     runtime's g of each goroutine the conn ever had at once (a dead
//     goroutine's g is kept for reuse, never freed);
//   - goroutines/conn: still running (0 when every idle conn is parked).
//
// Not in them: the netpoller's pollDesc (~500 B per socket, off heap; the
// runtime reuses freed ones, so a delta in one process says little) and
// what RSS adds (fragmentation, GC metadata, freed pages not returned);
// bench/idleconns and bench/compare measure RSS on a real process.
//
// Each measures once whatever b.N is: run with -benchtime 1x.
const idleBenchConns = 1000

// heapObjects is the live heap after two GCs (the second frees what
// sync.Pools moved to their victim caches at the first).
func heapObjects() float64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64())
}

// holdListener accepts conns and holds them without a goroutine each
// (never reads, never writes): the idle member of a tcp relay.
type holdListener struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startHolder(tb testing.TB) *holdListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h := &holdListener{ln: ln, done: make(chan struct{})}
	go h.accept()
	tb.Cleanup(h.close)
	return h
}

func (h *holdListener) accept() {
	defer close(h.done)
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
	}
}

func (h *holdListener) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *holdListener) close() {
	_ = h.ln.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.conns = nil
}

func dialN(tb testing.TB, addr string, n int) []net.Conn {
	conns := make([]net.Conn, 0, n)
	tb.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

func reportPerConn(b *testing.B, heap float64, goroutines, n int) {
	b.ReportMetric(heap/float64(n), "heap-B/conn")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/conn")
}

// BenchmarkIdleTCPConnMemory: a tcp-mode relay whose client and member are
// both idle (both directions parked), per conn; trim-ms is what one
// memTrimmer trim (trimMemory) takes with the conns held.
func BenchmarkIdleTCPConnMemory(b *testing.B) {
	const n = idleBenchConns
	direct := startHolder(b)
	m0 := heapObjects()
	dialN(b, direct.ln.Addr().String(), n)
	socktest.WaitFor(b, 10*time.Second, "direct conns held", func() bool { return direct.held() == n })
	own := heapObjects() - m0 // the test's client and member sockets

	holder := startHolder(b)
	p := startProxy(b, quietConfig(tcpConfig("", "", "", holder.ln.Addr().String())))
	vs := p.srv.VirtualServer("vs")
	m1, g1 := heapObjects(), runtime.NumGoroutine()
	dialN(b, p.addr("vs"), n)
	socktest.WaitFor(b, 20*time.Second, "every relay parked both ways", func() bool {
		return holder.held() == n && vs.Stats().Parked == 2*n
	})
	reportPerConn(b, heapObjects()-m1-own, runtime.NumGoroutine()-g1, n)
	start := time.Now()
	trimMemory()
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "trim-ms")
	for range b.N {
	}
}

// BenchmarkIdleHTTPConnMemory: an http-mode keepalive client conn that
// sent one GET, got its answer and is idle (parked), per conn. The member
// conns are pooled (at most the pool's max_idle), so they are not per conn.
func BenchmarkIdleHTTPConnMemory(b *testing.B) {
	const n = idleBenchConns
	direct := startHolder(b)
	m0 := heapObjects()
	dialN(b, direct.ln.Addr().String(), n)
	socktest.WaitFor(b, 10*time.Second, "direct conns held", func() bool { return direct.held() == n })
	own := (heapObjects() - m0) / 2 // one socket per conn on the test's side (the client's), not two

	be := startHTTPBackend(b, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(b, quietConfig(httpConfig("[virtual_server.http]\nkeepalive_timeout = \"60s\"\n", "", be.Addr())))
	vs := p.srv.VirtualServer("vs")
	// One request first: the pool's member conns and the server's lazily
	// built state are not per conn.
	for _, c := range dialN(b, p.addr("vs"), 1) {
		getOne(b, c)
	}
	m1, g1 := heapObjects(), runtime.NumGoroutine()
	for _, c := range dialN(b, p.addr("vs"), n) {
		getOne(b, c)
	}
	socktest.WaitFor(b, 20*time.Second, "every conn parked", func() bool { return vs.Stats().Parked == n+1 })
	reportPerConn(b, heapObjects()-m1-own, runtime.NumGoroutine()-g1, n)
	for range b.N {
	}
}

// quietConfig turns off the access log and debug logging: the test's log
// observer would keep every line in memory.
func quietConfig(toml string) string {
	return strings.Replace(toml, "level = \"debug\"", "level = \"warn\"\naccess = false", 1)
}

// getOne does a GET on c and reads the (small, one-read) answer.
func getOne(tb testing.TB, c net.Conn) {
	buf := make([]byte, 512)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Read(buf); err != nil {
		tb.Fatal(err)
	}
}
