package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Protocols and connection modes.
const (
	ProtocolHTTP = "http"
	ProtocolTCP  = "tcp"

	ConnShort = "short"
	ConnLong  = "long"

	CloseClient = "client"
	CloseServer = "server"

	// Options.TLSMin values.
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// Defaults applied by [Options.withDefaults].
const (
	DefaultConcurrency = 10
	DefaultDuration    = 10 * time.Second // when neither Duration nor Requests is set
	DefaultSize        = 64               // tcp payload bytes
	DefaultTimeout     = 10 * time.Second
)

// Options says what to measure. The zero value of every field but Target
// means its default; Validate reports what cannot work.
type Options struct {
	// Target is "http://host:port/path" or "https://host:port/path"
	// (protocol http; the port defaults to 80 / 443) or "host:port".
	// A host name is resolved once, before the run; every connection goes
	// to that one address, and TIME_WAIT is counted against it.
	Target string
	// Protocol is "http" or "tcp". Empty: http for an http:// or https://
	// target, tcp for host:port.
	Protocol string
	// Conn is "short" (a new TCP connection per request, closed after it)
	// or "long" (keepalive). Empty means long.
	Conn string
	// RequestsPerConn caps the requests on one long connection; the
	// connection is closed after that many and a new one opened.
	// 0 = unlimited (the connection lives as long as the run or the
	// target allows).
	RequestsPerConn int
	// Concurrency is the number of workers, each with at most one
	// connection open at a time. 0 = 10.
	Concurrency int
	// Requests ends the run after that many requests; Duration after that
	// much time. Set one; neither = 10 s. With Requests and no Rate the
	// requests are shared out equally between the workers up front.
	Requests int
	Duration time.Duration
	// Warmup runs the same load for this long before measuring, and
	// discards it (its connections are closed before the measured phase).
	// 0 = no warmup.
	Warmup time.Duration
	// Rate, requests per second, makes the load open loop: request i is
	// due at start + i/Rate whether or not earlier ones finished, and its
	// latency runs from that due time. Concurrency still bounds the
	// requests in flight; a target slower than Rate shows up as latency.
	// 0 = closed loop (each worker sends as soon as its last one ended).
	Rate float64
	// Method is the HTTP method; empty means GET, or POST when BodySize > 0.
	Method string
	// BodySize is the request body length in bytes (http); 0 = no body.
	BodySize int
	// Size is the tcp payload written and read back per request; 0 = 64.
	Size int
	// Headers are extra HTTP request header lines, "Name: value".
	Headers []string
	// Close says who should close a short http connection first: "client"
	// (default: the client closes once the response is read) or "server"
	// (the request says Connection: close and the client waits for the
	// server's FIN before closing, so TIME_WAIT lands on the target).
	// Whatever it says, a response carrying Connection: close is waited on
	// the same way.
	Close string
	// Timeout bounds connect and each request; a request is cut after
	// between Timeout/2 and Timeout (deadlines are refreshed coarsely).
	// 0 = 10 s.
	Timeout time.Duration
	// Label names the result in reports; empty means "<protocol> <conn>"
	// ("https <conn>" for an https:// target).
	Label string

	// TLS, for an https:// target only. Every connection does a TLS
	// handshake right after its TCP connect, offering ALPN http/1.1; the
	// handshake is timed on its own (Result.TLS).

	// CACert is a PEM file of the roots that verify the target's
	// certificate; "" = the system roots.
	CACert string
	// Insecure skips verifying the target's certificate (its handshake
	// signature is still checked). Off by default; not with CACert.
	Insecure bool
	// SNI is the server name sent and verified; "" = the URL's host (an IP
	// address is verified against the certificate's IP SANs and sent as no
	// SNI, as TLS requires).
	SNI string
	// TLSResume gives the run a client session cache (shared by the
	// workers, warmup included) so that new connections resume earlier
	// sessions when the target issues tickets. Off by default: every
	// connection does a full handshake, which is what short connections
	// cost a client that has never been seen.
	TLSResume bool
	// TLSMin is the lowest TLS version offered: "1.2" (default) or "1.3".
	// The highest is 1.3.
	TLSMin string
	// TLSGroups are the key exchange groups offered, in order of
	// preference: x25519, p256, p384, p521, x25519mlkem768,
	// secp256r1mlkem768, secp384r1mlkem1024. Empty = Go's default (which
	// since Go 1.24 leads with the hybrid x25519mlkem768, a bigger and
	// costlier handshake than x25519 alone: pin x25519 to compare with
	// servers whose TLS library lacks ML-KEM).
	TLSGroups []string
	// Progress, when not nil, gets a live progress bar (give it a
	// terminal only). nil = no bar.
	Progress io.Writer
}

// target is Options.Target resolved.
type target struct {
	addr netip.AddrPort
	host string // Host header value
	path string // request target, origin-form
	tls  bool   // an https:// target
	name string // the URL's host, without brackets: the default SNI
}

// isTLS reports whether the target is an https:// URL.
func (o Options) isTLS() bool { return strings.HasPrefix(o.Target, "https://") }

// withDefaults returns o with every zero field that has a default filled in.
func (o Options) withDefaults() Options {
	if o.Protocol == "" {
		o.Protocol = ProtocolTCP
		if strings.HasPrefix(o.Target, "http://") || o.isTLS() {
			o.Protocol = ProtocolHTTP
		}
	}
	if o.Conn == "" {
		o.Conn = ConnLong
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Requests == 0 && o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Method == "" {
		o.Method = "GET"
		if o.BodySize > 0 {
			o.Method = "POST"
		}
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Close == "" {
		o.Close = CloseClient
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Label == "" {
		o.Label = o.Protocol + " " + o.Conn
		if o.isTLS() && o.Protocol == ProtocolHTTP {
			o.Label = "https " + o.Conn
		}
	}
	if o.TLSMin == "" && o.isTLS() {
		o.TLSMin = TLS12
	}
	return o
}

// Validate reports the first option that cannot work, by its flag name.
// It checks o as given, after defaults are applied; it does not resolve
// host names.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.Target == "" {
		add("missing target (http://host:port/path or host:port)")
	}
	switch o.Protocol {
	case ProtocolHTTP, ProtocolTCP:
	default:
		add("--protocol %q: must be http or tcp", o.Protocol)
	}
	switch o.Conn {
	case ConnShort, ConnLong:
	default:
		add("--conn %q: must be short or long", o.Conn)
	}
	if o.Conn == ConnShort && o.RequestsPerConn > 0 {
		add("--requests-per-conn applies to --conn long only")
	}
	if o.RequestsPerConn < 0 {
		add("--requests-per-conn %d: must be >= 0", o.RequestsPerConn)
	}
	if o.Concurrency < 0 {
		add("--concurrency %d: must be > 0", o.Concurrency)
	}
	if o.Requests > 0 && o.Duration > 0 {
		add("--duration and --requests: give one, not both")
	}
	if o.Requests < 0 {
		add("--requests %d: must be > 0", o.Requests)
	}
	if o.Duration < 0 {
		add("--duration %v: must be > 0", o.Duration)
	}
	if o.Warmup < 0 {
		add("--warmup %v: must be >= 0", o.Warmup)
	}
	if o.Rate < 0 {
		add("--rate %v: must be >= 0", o.Rate)
	}
	if o.BodySize < 0 || o.Size < 0 {
		add("--body-size and --size must be >= 0")
	}
	if o.Timeout < 0 {
		add("--timeout %v: must be > 0", o.Timeout)
	}
	switch o.Close {
	case CloseClient:
	case CloseServer:
		if o.Protocol != ProtocolHTTP || o.Conn != ConnShort {
			add("--close server applies to --protocol http --conn short only")
		}
	default:
		add("--close %q: must be client or server", o.Close)
	}
	if o.Protocol == ProtocolTCP && (o.BodySize > 0 || len(o.Headers) > 0 || strings.Contains(o.Target, "://")) {
		add("--body-size, --header and URL targets apply to --protocol http only")
	}
	for _, h := range o.Headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.TrimSpace(name) != name || strings.ContainsAny(h, "\r\n") {
			add("--header %q: want \"Name: value\"", h)
		}
	}
	if o.Target != "" {
		if _, _, _, err := splitTarget(o.Target, o.Protocol); err != nil {
			errs = append(errs, err)
		}
	}
	if o.isTLS() {
		switch o.TLSMin {
		case TLS12, TLS13:
		default:
			add("--tls-min %q: must be 1.2 or 1.3", o.TLSMin)
		}
		if o.Insecure && o.CACert != "" {
			add("--insecure and --cacert: give one, not both")
		}
		for _, g := range o.TLSGroups {
			if _, ok := tlsGroups[strings.ToLower(g)]; !ok {
				add("--tls-groups %q: want one of %s", g, groupNames())
			}
		}
		if strings.ContainsAny(o.SNI, " /:\r\n") {
			add("--sni %q: want a host name", o.SNI)
		}
	} else if o.CACert != "" || o.Insecure || o.SNI != "" || o.TLSResume || o.TLSMin != "" || len(o.TLSGroups) > 0 {
		add("--cacert, --insecure, --sni, --tls-resume, --tls-min and --tls-groups apply to https:// targets only")
	}
	return errors.Join(errs...)
}

// splitTarget parses a target into host, port and request path.
func splitTarget(t, _ string) (host, port, path string, err error) {
	hostport := t
	path = "/"
	if strings.Contains(t, "://") {
		u, err := url.Parse(t)
		if err != nil {
			return "", "", "", fmt.Errorf("target %q: %w", t, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", "", "", fmt.Errorf("target %q: only http:// and https:// URLs are supported", t)
		}
		if u.User != nil || u.Fragment != "" {
			return "", "", "", fmt.Errorf("target %q: no userinfo or fragment", t)
		}
		hostport = u.Host
		if u.RequestURI() != "" {
			path = u.RequestURI()
		}
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), defaultPort(u.Scheme))
		}
	}
	host, port, err = net.SplitHostPort(hostport)
	if err != nil {
		return "", "", "", fmt.Errorf("target %q: want host:port: %w", t, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", "", fmt.Errorf("target %q: bad port %q", t, port)
	}
	if host == "" {
		return "", "", "", fmt.Errorf("target %q: missing host", t)
	}
	return host, port, path, nil
}

// resolve turns o.Target into one address.
func resolve(ctx context.Context, o Options) (target, error) {
	host, port, path, err := splitTarget(o.Target, o.Protocol)
	if err != nil {
		return target{}, err
	}
	p, _ := strconv.ParseUint(port, 10, 16)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if lerr != nil || len(ips) == 0 {
			return target{}, fmt.Errorf("target %q: resolve %q: %w", o.Target, host, lerr)
		}
		ip = ips[0]
	}
	tls := o.isTLS()
	hostHeader := net.JoinHostPort(host, port)
	if (!tls && port == "80") || (tls && port == "443") {
		hostHeader = host
		if strings.Contains(host, ":") {
			hostHeader = "[" + host + "]"
		}
	}
	return target{addr: netip.AddrPortFrom(ip.Unmap(), uint16(p)), host: hostHeader, path: path, tls: tls, name: host}, nil
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}
