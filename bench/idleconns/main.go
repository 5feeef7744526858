// Command idleconns opens and holds idle TCP connections, for measuring what
// an idle proxied connection costs a proxy (bench/compare).
//
// Client side: open N connections to ADDR, print "ready N" once all are
// established, then hold them until stdin closes or SIGINT/SIGTERM arrives.
// While holding, "closed K" is printed whenever the count of held connections
// that ended (EOF, error, or unexpected bytes from the peer) changes (at most
// every 100 ms): a measurement over connections that did not stay open is void.
//
//	idleconns -connect 127.0.0.1:7000 -n 5000
//
// Each client connection can first do one HTTP/1.1 keepalive request, so that
// what is held is an idle keepalive client connection of an HTTP proxy:
// -request PATH sends "GET PATH HTTP/1.1" with "Host: ADDR" (or the -sni
// name) and reads one whole response (Content-Length, chunked or empty; at
// most 1 MiB with its header). A status outside 2xx/3xx, a response that
// closes the connection ("Connection: close"), or bytes after the response
// fail the run. "ready N" is printed once every connection has its response.
//
//	idleconns -connect 127.0.0.1:7000 -n 2000 -request /
//
// TLS: with -cacert FILE (PEM; the server's certificate must verify against
// it) or -insecure (no verification), each connection completes a TLS
// handshake before "ready" (and before its request, with -request). -sni NAME
// is the server name sent and verified (default: ADDR's host; an IP address is
// verified against the certificate's IP SANs and sends no SNI). The client
// offers TLS 1.2 and 1.3, the X25519 key exchange only (as bench/compare's
// handshake runs do, so no proxy pays for a larger key share), ALPN http/1.1,
// and no session resumption. Once ready it prints what the first connection
// negotiated: "tls VERSION CIPHER_SUITE GROUP ALPN".
//
//	idleconns -connect 127.0.0.1:7443 -n 2000 -cacert cert.pem -request /
//
// Backend side: accept connections on ADDR and hold them (never read, never
// write), printing "accepted N" whenever the count of held connections
// changes (at most every 100 ms), until stdin closes or a signal arrives.
//
//	idleconns -hold 127.0.0.1:7001
//
// Every connection is plain TCP (or TLS over it) with Go's keepalive switched
// off, so nothing but the proxy's own timers touches it.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxResponse bounds what one -request reads: status line, header and body.
const maxResponse = 1 << 20

// client says what each -connect connection does before it is held.
type client struct {
	addr    string
	tls     *tls.Config // nil: plain TCP
	request string      // request path; "": no request
	host    string      // Host header with -request
}

func main() {
	connect := flag.String("connect", "", "open connections to `ADDR`")
	hold := flag.String("hold", "", "accept and hold connections on `ADDR`")
	n := flag.Int("n", 1000, "number of connections to open (-connect)")
	par := flag.Int("parallel", 128, "connects in flight at once (-connect)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up if not all connected (and answered) within this time (-connect)")
	request := flag.String("request", "", "on each connection, first GET `PATH` with HTTP/1.1 keepalive and read the whole response (-connect)")
	cacert := flag.String("cacert", "", "TLS: verify the server against the PEM certificate(s) in `FILE` (-connect)")
	sni := flag.String("sni", "", "TLS: server `NAME` to send and verify, also the Host header (default: ADDR's host)")
	insecure := flag.Bool("insecure", false, "TLS without verifying the server's certificate (-connect)")
	waitStdin := flag.Bool("stdin", true, "also stop when stdin closes (pass -stdin=false when stdin is /dev/null)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Closing stdin (or EOF on it) ends the run too.
	if *waitStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	switch {
	case *connect != "" && *hold == "":
		cl, err := newClient(*connect, *request, *cacert, *sni, *insecure)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: %v\n", err)
			os.Exit(2)
		}
		os.Exit(runConnect(ctx, cl, *n, *par, *timeout))
	case *hold != "" && *connect == "":
		os.Exit(runHold(ctx, *hold))
	default:
		fmt.Fprintln(os.Stderr, "usage: idleconns -connect ADDR -n N [-request PATH] [-cacert FILE | -insecure] [-sni NAME] | idleconns -hold ADDR")
		os.Exit(2)
	}
}

func newClient(addr, request, cacert, sni string, insecure bool) (*client, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-connect %q: %w", addr, err)
	}
	cl := &client{addr: addr, request: request, host: addr}
	if request != "" && (request[0] != '/' || len(request) > 2048) {
		return nil, fmt.Errorf("-request %q: want an absolute path of at most 2048 bytes", request)
	}
	if sni != "" {
		cl.host = sni
	}
	if cacert == "" && !insecure {
		return cl, nil
	}
	cfg := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: insecure,
		MinVersion:         tls.VersionTLS12,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		NextProtos:         []string{"http/1.1"},
	}
	if sni != "" {
		cfg.ServerName = sni
	}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate in it", cacert)
		}
	}
	cl.tls = cfg
	return cl, nil
}

// open dials one connection and does what cl asks before it is held: the TLS
// handshake, then the request. It closes the connection when it fails.
func (cl *client) open(ctx context.Context, d *net.Dialer) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", cl.addr)
	if err != nil {
		return nil, err
	}
	if cl.tls != nil {
		tc := tls.Client(c, cl.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	if cl.request != "" {
		if err := cl.get(ctx, c); err != nil {
			c.Close()
			return nil, fmt.Errorf("GET %s: %w", cl.request, err)
		}
	}
	return c, nil
}

// get sends one keepalive GET on c and reads the whole response, within
// ctx's deadline; c is left with no deadline and nothing buffered.
func (cl *client) get(ctx context.Context, c net.Conn) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(c, "GET "+cl.request+" HTTP/1.1\r\nHost: "+cl.host+"\r\n\r\n"); err != nil {
		return err
	}
	br := bufio.NewReader(io.LimitReader(c, maxResponse))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("reading the response body: %w", err)
	case resp.StatusCode < 200 || resp.StatusCode > 399:
		return fmt.Errorf("status %q", resp.Status)
	case resp.Close:
		return errors.New("the server closes the connection after the response (not keepalive)")
	case br.Buffered() > 0:
		return fmt.Errorf("%d unexpected bytes after the response", br.Buffered())
	}
	return c.SetDeadline(time.Time{})
}

func runConnect(ctx context.Context, cl *client, n, par int, timeout time.Duration) int {
	d := net.Dialer{KeepAlive: -1, KeepAliveConfig: net.KeepAliveConfig{Enable: false}, Timeout: 10 * time.Second}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	conns := make([]net.Conn, n)
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr atomic.Value
		next     atomic.Int64
	)
	if par < 1 {
		par = 1
	}
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || dctx.Err() != nil {
					return
				}
				c, err := cl.open(dctx, &d)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					cancel()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 || dctx.Err() != nil {
		err, _ := firstErr.Load().(error)
		if err == nil {
			err = dctx.Err()
		}
		fmt.Fprintf(os.Stderr, "idleconns: %d of %d connections failed: %v\n", f, n, err)
		return 1
	}
	fmt.Printf("ready %d\n", n)
	if tc, ok := conns[0].(*tls.Conn); ok {
		st := tc.ConnectionState()
		alpn := st.NegotiatedProtocol
		if alpn == "" {
			alpn = "-"
		}
		fmt.Printf("tls %s %s %s %s\n", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID, alpn)
	}

	// Notice a connection the peer ends, so that "closed K" tells the
	// caller its measurement is off. The watchers end when the deferred
	// Close above unblocks their Read.
	var closed atomic.Int64
	for _, c := range conns {
		go watchConn(c, &closed)
	}
	last := int64(0)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
			if k := closed.Load(); k != last {
				last = k
				fmt.Printf("closed %d\n", k)
			}
		}
	}
}

// watchConn blocks in a one-byte read on a held connection, which the peer
// should never answer, and counts it in closed when it returns (EOF, an
// error, or bytes nobody asked for).
func watchConn(c net.Conn, closed *atomic.Int64) {
	var b [1]byte
	_, _ = c.Read(b[:])
	closed.Add(1)
}

func runHold(ctx context.Context, addr string) int {
	lc := net.ListenConfig{KeepAlive: -1, KeepAliveConfig: net.KeepAliveConfig{Enable: false}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "idleconns: %v\n", err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())

	var (
		mu    sync.Mutex
		conns []net.Conn
		count atomic.Int64
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// EMFILE and friends: back off, keep going.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			count.Add(1)
			// Notice a peer close so the count stays true, without ever
			// reading payload (a held conn sees no bytes).
			go func(c net.Conn) {
				var b [1]byte
				_, _ = c.Read(b[:])
				count.Add(-1)
			}(c)
		}
	}()

	last := int64(-1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			return 0
		case <-tick.C:
			if c := count.Load(); c != last {
				last = c
				fmt.Printf("accepted %d\n", c)
			}
		}
	}
}
