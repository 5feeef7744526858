package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/bench"
	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt"
)

// demoProfiles are the TCP profiles of the built-in configuration: clients
// found dead within ~1.5 minutes, members kept alive for pooling.
const demoProfiles = `
[log]
level = "warn"
format = "console"
access = false

[tcp_profile.clients]
keepalive_idle = "60s"
keepalive_interval = "10s"
keepalive_probes = 3
idle_timeout = "30s"

[tcp_profile.members]
keepalive_idle = "30s"
keepalive_interval = "5s"
keepalive_probes = 3
idle_timeout = "0s"
`

// The demo's virtual servers: two kinds (pooled or not) measured with
// short and with long client connections. Each measured run gets its own
// virtual server and member, so the TIME_WAIT and connection counts of one
// run are not mixed with another's (TIME_WAIT lasts 60 s).
var demoKinds = []struct {
	name, reuse, what string
	tls               bool // clients speak TLS to tether
}{
	{"oneconnect", "shared", "pooled member connections", false},
	{"no-reuse", "never", "a member connection per client connection", false},
	{"https", "shared", "pooled, and TLS from the clients (a handshake per client connection)", true},
}

var demoConns = []string{"short", "long"}

func demoVS(kind, conn string) string { return kind + "-" + conn }

// demoConfig is the built-in configuration of `tether demo`: for each kind
// and client-connection mode an http virtual server in front of its own
// in-process member, and a tcp virtual server in front of an echo member.
func demoConfig(members map[string]string, echo string, cert demoCert) string {
	var b strings.Builder
	b.WriteString(demoProfiles)
	for _, k := range demoKinds {
		for _, conn := range demoConns {
			name := demoVS(k.name, conn)
			tlsTable := ""
			if k.tls {
				tlsTable = fmt.Sprintf("[virtual_server.tls]\ncertificates = [{ cert = %q, key = %q }]\n", cert.certFile, cert.keyFile)
			}
			fmt.Fprintf(&b, `
[pool.%[1]s]
reuse = %[2]q
members = [{ address = %[3]q, max_connections = 64 }]
[pool.%[1]s.health]
type = "none"

[[virtual_server]]
name = %[1]q
listen = "127.0.0.1:0"
mode = "http"
pool = %[1]q
client_profile = "clients"
server_profile = "members"
[virtual_server.http]
max_requests = 0
%[4]s`, name, k.reuse, members[name], tlsTable)
		}
	}
	fmt.Fprintf(&b, `
[pool.echo]
members = [{ address = %q }]

[[virtual_server]]
name = "tcp-echo"
listen = "127.0.0.1:0"
mode = "tcp"
pool = "echo"
`, echo)
	return b.String()
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("duration", 3*time.Second, "length of each measured run (6 runs)")
	conc := fs.Int("concurrency", 16, "concurrent client connections")
	htmlFile := fs.String("html", "", "write the report as a self-contained HTML `FILE`")
	keep := fs.Bool("keep", false, "leave everything running after the runs and print the addresses (Ctrl-C ends)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *dur <= 0 || *conc < 1 {
		fmt.Fprintln(stderr, "usage: tether demo [--duration 3s] [--concurrency 16] [--html FILE] [--keep]")
		return exitUsage
	}
	d, err := startDemo(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tether demo: %v\n", err)
		return exitError
	}
	defer d.stop()

	fmt.Fprintf(stdout, "tether demo: in-process HTTP members behind tether, %d clients, %s per run\n", *conc, *dur)
	for _, k := range demoKinds {
		fmt.Fprintf(stdout, "  %-10s reuse = %-8q %s\n", k.name, k.reuse, k.what)
	}
	fmt.Fprintln(stdout)

	var rows []demoRow
	var results []*bench.Result
	for _, k := range demoKinds {
		for _, conn := range demoConns {
			if ctx.Err() != nil {
				return exitError
			}
			row, res, err := d.measure(ctx, k.name, conn, *conc, *dur)
			if err != nil {
				fmt.Fprintf(stderr, "tether demo: %s %s: %v\n", k.name, conn, err)
				return exitError
			}
			rows = append(rows, row)
			results = append(results, res)
		}
	}
	writeDemoTable(stdout, rows)
	if *htmlFile != "" {
		if err := writeHTMLFile(*htmlFile, "tether demo: short vs long connections, pooled vs unpooled members", results); err != nil {
			fmt.Fprintf(stderr, "tether demo: %v\n", err)
			return exitError
		}
		fmt.Fprintf(stdout, "\nreport: %s\n", *htmlFile)
	}
	if *keep {
		one, none := demoVS("oneconnect", "short"), demoVS("no-reuse", "short")
		fmt.Fprintf(stdout, "\nstill running (Ctrl-C to stop):\n")
		fmt.Fprintf(stdout, "  oneconnect  http://%s/  (member %s)\n", d.addr(one), d.members[one].addr())
		fmt.Fprintf(stdout, "  no-reuse    http://%s/  (member %s)\n", d.addr(none), d.members[none].addr())
		fmt.Fprintf(stdout, "  https       https://%s/  (curl --cacert %s)\n", d.addr(demoVS("https", "short")), d.cert.caFile)
		fmt.Fprintf(stdout, "  tcp echo    %s\n", d.addr("tcp-echo"))
		fmt.Fprintf(stdout, "try:\n  curl -v http://%s/\n  go run ./cmd/tether bench --compare http://%s/\n  go run ./cmd/tether conns --port %s --port %s\n",
			d.addr(one), d.addr(none), portOf(d.addr(one)), portOf(d.members[one].addr()))
		<-ctx.Done()
	}
	return exitOK
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// demo is everything `tether demo` runs in-process.
type demo struct {
	srv     *proxy.Server
	members map[string]*demoServer // HTTP members, by virtual server
	echo    *demoServer
	cert    demoCert // for the https virtual servers
}

func startDemo(logOut io.Writer) (*demo, error) {
	d := &demo{members: map[string]*demoServer{}}
	var err error
	if d.cert, err = makeDemoCert(); err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, k := range demoKinds {
		for _, conn := range demoConns {
			m, err := startDemoServer(demoHTTP)
			if err != nil {
				d.stop()
				return nil, err
			}
			d.members[demoVS(k.name, conn)] = m
			addrs[demoVS(k.name, conn)] = m.addr()
		}
	}
	if d.echo, err = startDemoServer(demoEcho); err != nil {
		d.stop()
		return nil, err
	}
	cfg, err := config.Parse([]byte(demoConfig(addrs, d.echo.addr(), d.cert)))
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("built-in config: %w", err)
	}
	logger, err := newLogger(cfg.Log, logOut)
	if err != nil {
		d.stop()
		return nil, err
	}
	if d.srv, err = proxy.New(cfg, logger.With(zap.String("demo", "tether"))); err != nil {
		d.stop()
		return nil, err
	}
	if err := d.srv.Start(context.Background()); err != nil {
		d.srv = nil
		d.stop()
		return nil, err
	}
	return d, nil
}

func (d *demo) addr(vs string) string { return d.srv.ListenAddr(vs).String() }

func (d *demo) stop() {
	if d.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = d.srv.Shutdown(ctx)
		cancel()
	}
	for _, m := range d.members {
		m.close()
	}
	if d.echo != nil {
		d.echo.close()
	}
	d.cert.remove()
}

// demoRow is one line of the demo's table.
type demoRow struct {
	vs, conn    string
	rps         float64
	p50, p99    time.Duration
	errors      int64
	clientConns int
	memberConns int64
	twClient    int
	twFront     int
	twBack      int
	twMember    int
}

// measure runs bench through the virtual server of one kind and mode and
// counts what it cost on every side: member connections opened, TIME_WAIT on
// the client, on tether's front (its listen port), on tether's back (toward
// the member) and on the member. The virtual server and member serve only
// this run, so the counts are this run's.
func (d *demo) measure(ctx context.Context, kind, conn string, conc int, dur time.Duration) (demoRow, *bench.Result, error) {
	vs := demoVS(kind, conn)
	m := d.members[vs]
	front, member := d.addr(vs), m.addr()
	opts := bench.Options{
		Target:      "http://" + front + "/",
		Protocol:    "http",
		Conn:        conn,
		Concurrency: conc,
		Duration:    dur,
	}
	if kindTLS(kind) {
		opts.Target, opts.CACert = "https://"+front+"/", d.cert.caFile
	}
	res, err := bench.Run(ctx, opts)
	if err != nil {
		return demoRow{}, nil, err
	}
	res.Label = kind + " " + conn
	time.Sleep(300 * time.Millisecond) // closes settle into TIME_WAIT before counting
	tw, err := timeWaits(front, member)
	if err != nil {
		return demoRow{}, nil, err
	}
	var errs int64
	for _, n := range res.Errors {
		errs += n
	}
	return demoRow{
		vs: kind, conn: conn, rps: res.RPS, p50: res.Latency.P50, p99: res.Latency.P99, errors: errs,
		clientConns: res.ConnsOpened,
		memberConns: m.accepted.Load(),
		twClient:    tw.client,
		twFront:     tw.front,
		twBack:      tw.back,
		twMember:    tw.member,
	}, res, nil
}

type twCounts struct{ client, front, back, member int }

// timeWaits counts TIME_WAIT sockets around tether: client side (remote is
// tether's front), tether's front (local is the front), tether's back
// (remote is the member), the member's side (local is the member).
func timeWaits(front, member string) (twCounts, error) {
	f, err := netip.ParseAddrPort(front)
	if err != nil {
		return twCounts{}, err
	}
	m, err := netip.ParseAddrPort(member)
	if err != nil {
		return twCounts{}, err
	}
	socks, err := sockopt.Sockets()
	if err != nil {
		return twCounts{}, err
	}
	var c twCounts
	for _, s := range socks {
		if s.State != sockopt.StateTimeWait {
			continue
		}
		switch {
		case s.Remote == f:
			c.client++
		case s.Local == f:
			c.front++
		case s.Remote == m:
			c.back++
		case s.Local == m:
			c.member++
		}
	}
	return c, nil
}

func writeDemoTable(w io.Writer, rows []demoRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "virtual server\tclients\treq/s\tp50\tp99\terrors\tclient conns\tmember conns\tTIME_WAIT client\ttether front\ttether back\tmember\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n",
			r.vs, r.conn, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors,
			r.clientConns, r.memberConns, r.twClient, r.twFront, r.twBack, r.twMember)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "%-10s %-5s  %s\n", r.vs, r.conn, explainDemoRow(r))
	}
	fmt.Fprintln(w, "\nTIME_WAIT lasts 60 s on whichever side closes first; a count near 14,000 means the client's ports")
	fmt.Fprintln(w, "ran out of fresh 4-tuples and Linux reused TIME_WAIT ones: nearly every close left one.")
}

// explainDemoRow says in one line what a row shows.
func explainDemoRow(r demoRow) string {
	switch {
	case r.vs == "https" && r.conn == "short":
		return fmt.Sprintf("as oneconnect short, plus a TLS handshake for each of the %d client connections: what short connections cost once TLS is on (no TIME_WAIT: tether's close_notify reaches a client socket already closed, which answers with a reset)", r.clientConns)
	case r.vs == "https":
		return "keepalive TLS clients: one handshake per client connection, then requests at nearly plain-HTTP cost"
	case r.vs == "oneconnect" && r.conn == "short":
		return fmt.Sprintf("a new client connection per request, yet only %d member connections: tether pools them; the clients' closes leave TIME_WAIT on the client (%d) and on tether's front port (%d), none on its ephemeral ports", r.memberConns, r.twClient, r.twFront)
	case r.vs == "oneconnect":
		return "keepalive clients on pooled member connections: no connection is opened or closed while requests flow"
	case r.conn == "short":
		return fmt.Sprintf("every client connection costs a member connection too (%d): two handshakes per request, and %d TIME_WAIT land on tether's ephemeral ports toward the member", r.memberConns, r.twBack)
	default:
		return "keepalive clients each keep their own member connection: fine while clients stay, one member connection per client"
	}
}

// demoServer is an in-process member on a free 127.0.0.1 port: it runs
// handle for each connection, counts accepted connections, and close ends
// the listener, every connection and every goroutine.
type demoServer struct {
	ln       net.Listener
	handle   func(net.Conn)
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startDemoServer(handle func(net.Conn)) (*demoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &demoServer{ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

func (m *demoServer) addr() string { return m.ln.Addr().String() }

func (m *demoServer) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.accepted.Add(1)
		m.mu.Lock()
		m.conns[c] = struct{}{}
		m.mu.Unlock()
		m.wg.Add(1)
		go m.serveConn(c)
	}
}

func (m *demoServer) serveConn(c net.Conn) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.conns, c)
		m.mu.Unlock()
		_ = c.Close()
	}()
	m.handle(c)
}

func (m *demoServer) close() {
	_ = m.ln.Close()
	m.mu.Lock()
	for c := range m.conns {
		_ = c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

var demoBody = strings.Repeat("tether demo 64-byte answer ", 3)[:63] + "\n"

var demoResponse = []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(demoBody), demoBody))

// demoHTTP is the HTTP member's handler: keepalive HTTP/1.1, a fixed
// 64-byte answer to every request (heads only: the demo sends no bodies),
// until the client closes or says Connection: close.
func demoHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		closing := false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if bytes.EqualFold(bytes.TrimSpace(line), connectionClose) {
				closing = true
			}
		}
		if _, err := c.Write(demoResponse); err != nil || closing {
			return
		}
	}
}

var connectionClose = []byte("connection: close")

// demoEcho is the TCP echo member's handler.
func demoEcho(c net.Conn) { _, _ = io.Copy(c, c) }

// kindTLS reports whether the demo kind's clients speak TLS.
func kindTLS(kind string) bool {
	for _, k := range demoKinds {
		if k.name == kind {
			return k.tls
		}
	}
	return false
}

// demoCert is a throwaway self-signed certificate for 127.0.0.1 in a temp
// dir: its files for tether, and the same certificate as the root bench
// trusts.
type demoCert struct {
	dir, certFile, keyFile, caFile string
}

func makeDemoCert() (demoCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return demoCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "tether demo (throwaway)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return demoCert{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return demoCert{}, err
	}
	dir, err := os.MkdirTemp("", "tether-demo-")
	if err != nil {
		return demoCert{}, err
	}
	c := demoCert{dir: dir, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	c.caFile = c.certFile // self-signed: the certificate is its own root
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(c.certFile, certPEM, 0o600); err != nil {
		c.remove()
		return demoCert{}, err
	}
	if err := os.WriteFile(c.keyFile, keyPEM, 0o600); err != nil {
		c.remove()
		return demoCert{}, err
	}
	return c, nil
}

func (c demoCert) remove() {
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}
