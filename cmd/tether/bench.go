package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/tetherproxy/tether/bench"
)

const benchUsage = `usage: tether bench [flags] TARGET

TARGET is http://host:port/path or https://host:port/path (protocol http; https
does a TLS handshake per connection, timed on its own) or host:port (protocol
tcp: an echo).

examples:
  tether bench --conn long -c 50 --duration 5s http://127.0.0.1:8080/
  tether bench --conn short -c 20 --requests 20000 http://127.0.0.1:8080/
  tether bench --compare -c 20 --duration 5s --html report.html http://127.0.0.1:8080/
  tether bench --rate 2000 --duration 10s http://127.0.0.1:8080/
  tether bench --compare -c 20 --duration 5s --cacert ca.pem https://127.0.0.1:8443/
  tether bench --conn short --cacert ca.pem --sni example.test --tls-groups x25519 https://127.0.0.1:8443/
  tether bench --protocol tcp --size 512 127.0.0.1:7000

flags:
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ", ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// cmdBench runs `tether bench`. The text table goes to stdout (or JSON
// with --json); a progress bar goes to stderr when stdout is a terminal.
// ctx ending (Ctrl-C) stops the run; what was measured is still printed.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o bench.Options
	var headers stringList
	var groups string
	var compare, asJSON bool
	var htmlFile string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Protocol, "protocol", "", "`http` or tcp (default: http for an http:// target, tcp for host:port)")
	fs.StringVar(&o.Conn, "conn", "long", "`short` (a new TCP connection per request) or long (keepalive)")
	fs.BoolVar(&compare, "compare", false, "run short, then long, on the same target and show them side by side")
	fs.IntVar(&o.RequestsPerConn, "requests-per-conn", 0, "requests per long connection before a new one (`N`, 0 = unlimited)")
	fs.IntVar(&o.Concurrency, "concurrency", bench.DefaultConcurrency, "workers, each with at most one connection")
	fs.IntVar(&o.Concurrency, "c", bench.DefaultConcurrency, "shorthand for --concurrency")
	fs.DurationVar(&o.Duration, "duration", 0, "measure for this long (default 10s unless --requests)")
	fs.DurationVar(&o.Duration, "d", 0, "shorthand for --duration")
	fs.IntVar(&o.Requests, "requests", 0, "measure this many requests (instead of --duration)")
	fs.IntVar(&o.Requests, "n", 0, "shorthand for --requests")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: send this many requests/s on schedule, latency from the scheduled time (0 = closed loop)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "run the load this long first, unmeasured")
	fs.StringVar(&o.Method, "method", "", "HTTP method (default GET, or POST with --body-size)")
	fs.IntVar(&o.BodySize, "body-size", 0, "HTTP request body `bytes`")
	fs.Var(&headers, "header", "extra HTTP request header \"`Name: value`\" (repeatable)")
	fs.Var(&headers, "H", "shorthand for --header")
	fs.IntVar(&o.Size, "size", bench.DefaultSize, "tcp: `bytes` written and read back per request")
	fs.StringVar(&o.Close, "close", bench.CloseClient, "short http conns: who closes first, `client` or server (request says Connection: close)")
	fs.DurationVar(&o.Timeout, "timeout", bench.DefaultTimeout, "connect and request timeout")
	fs.StringVar(&o.CACert, "cacert", "", "https: PEM `FILE` of the roots that verify the target (default: the system roots)")
	fs.BoolVar(&o.Insecure, "insecure", false, "https: do not verify the target's certificate (a warning is printed)")
	fs.StringVar(&o.SNI, "sni", "", "https: server `NAME` sent and verified (default: the URL's host)")
	fs.BoolVar(&o.TLSResume, "tls-resume", false, "https: keep a client session cache so new connections resume (default: every connection does a full handshake)")
	fs.StringVar(&o.TLSMin, "tls-min", "", "https: lowest TLS `version` offered, 1.2 or 1.3 (default 1.2)")
	fs.StringVar(&groups, "tls-groups", "", "https: key exchange `groups` offered, comma-separated, e.g. x25519,p256 (default: Go's, which leads with x25519mlkem768)")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of the table")
	fs.StringVar(&htmlFile, "html", "", "also write a self-contained HTML report to `FILE`")

	// Flags may come before or after the target.
	var targets []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		targets = append(targets, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tether bench: "+format+"\n", a...)
		fmt.Fprintln(stderr, "run 'tether bench -h' for the flags")
		return exitUsage
	}
	switch len(targets) {
	case 0:
		return usageErr("missing target (http://host:port/path or host:port)")
	case 1:
		o.Target = targets[0]
	default:
		return usageErr("one target, got %d: %s", len(targets), strings.Join(targets, " "))
	}
	o.Headers = headers
	if groups != "" {
		for _, g := range strings.Split(groups, ",") {
			o.TLSGroups = append(o.TLSGroups, strings.TrimSpace(g))
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if compare && set["conn"] {
		return usageErr("--compare runs both --conn short and long; drop --conn")
	}
	runs := []bench.Options{o}
	if compare {
		short, long := o, o
		short.Conn, short.RequestsPerConn, short.Label = bench.ConnShort, 0, "short"
		long.Conn, long.Label, long.Close = bench.ConnLong, "long", bench.CloseClient
		runs = []bench.Options{short, long}
	}
	for _, r := range runs {
		if err := r.Validate(); err != nil {
			return usageErr("%s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		}
	}
	if o.Insecure {
		fmt.Fprintln(stderr, "tether bench: WARNING: --insecure: the target's certificate is not verified")
	}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		for i := range runs {
			runs[i].Progress = stderr
		}
	}

	var results []*bench.Result
	for _, r := range runs {
		if ctx.Err() != nil {
			break
		}
		res, err := bench.Run(ctx, r)
		if err != nil {
			fmt.Fprintf(stderr, "tether bench: %v\n", err)
			return exitError
		}
		results = append(results, res)
	}
	var err error
	if asJSON {
		err = bench.WriteJSON(stdout, results...)
	} else {
		err = bench.WriteText(stdout, results...)
	}
	if err == nil && htmlFile != "" {
		err = writeHTMLFile(htmlFile, "tether bench "+o.Target+" "+time.Now().Format("2006-01-02 15:04"), results)
		if err == nil && !asJSON {
			fmt.Fprintf(stdout, "HTML report: %s\n", htmlFile)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "tether bench: %v\n", err)
		return exitError
	}
	return exitOK
}

func writeHTMLFile(path, title string, rs []*bench.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := bench.WriteHTML(f, title, rs...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
