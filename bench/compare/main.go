// Command compare measures tether against HAProxy, nginx and no proxy at
// all on 127.0.0.1, the same loads through each, in one run, and prints
// tables of the figures and their ratios (JSON in bench/results/), then
// one table of every target (issue 13's) with its verdict: met or MISSED.
//
// The "same run" rule, issue 13's method: every ratio compares figures
// measured in the same invocation, with the proxy alone on one CPU (tether
// GOMAXPROCS=1, HAProxy nbthread 1, nginx 1 worker), the load generators
// and backends on another (taskset), no access log anywhere, client
// keepalive unlimited, and each peer at its best pooling (HAProxy
// http-reuse always, nginx upstream keepalive 64 with HTTP/1.1, an empty
// Connection header and no retirement, so that each keeps a member conn
// per concurrent client). HTTP loads are wrk -t1 -c50.
//
//	go run ./bench/compare -tether /tmp/tb/tether -rounds 3  # everything, medians of 3
//	go run ./bench/compare -quick -only http                 # a smoke run of one scenario
//	go run ./bench/compare -only connect,syscalls            # some scenarios
//	go run ./bench/compare -tether old/tether -tether-b new/tether -rounds 3
//
// The scenarios (-only, -skip):
//   - iperf3, redis: tcp throughput (÷ direct), redis req per proxy CPU-s.
//   - connect: tcp connect rate (50 clients connect / write 16 B / read / close), conns per proxy CPU-s.
//   - idle, idle-http: RSS per idle conn over a whole batch of 5,000, read 10 s after it opened.
//   - http: keepalive and Connection: close req per proxy CPU-s, member conns opened.
//   - allcores: nothing pinned (tether default GOMAXPROCS, HAProxy nbthread 2, nginx 2 workers): req/s.
//   - scaling: one tether at GOMAXPROCS 1 and 2, the load pinned as in http: req/s and their ratio.
//   - latency: open-loop p50/p99 at 70% of HAProxy's closed-loop peak (tether bench --rate).
//   - syscalls: strace -c -f on each proxy during separate short loads: syscalls per request, EAGAIN.
//   - tbench, loadgen: tether bench as the load generator, against wrk and ab.
//   - https, idle-https, cost: TLS termination, and issue 7's A/B of the warm pool.
//
// The connect scenario's echo backend is this program, re-executed with
// -serve-echo ADDR on the load CPU. Run with -h for the flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scenarios, in the order they run.
var scenarioNames = []string{"iperf3", "redis", "connect", "idle", "http", "idle-http", "allcores", "scaling", "latency", "syscalls", "tbench", "loadgen", "https", "idle-https", "cost"}

var scenarioHelp = map[string]string{
	"iperf3":     "tcp mode: iperf3 one stream, Gbit/s and Gbit per proxy CPU-second",
	"redis":      "tcp mode: redis-benchmark -c 50 SET/GET, req/s and req per proxy CPU-second",
	"connect":    "tcp mode: 50 clients connect / write 16 B / read the echo / close: conns/s and conns per proxy CPU-second",
	"idle":       "tcp mode: RSS per idle proxied conn over the whole batch of N (5,000), read 10 s after; a second batch on top: marginal (info)",
	"http":       "wrk keepalive and Connection: close clients (pooled member): req/s, p99, req per proxy CPU-s, member conns, TIME_WAIT by side",
	"idle-http":  "RSS per idle keepalive client conn over the whole batch of N (5,000; one GET each, then idle)",
	"allcores":   "nothing pinned (tether default GOMAXPROCS, HAProxy nbthread 2, nginx 2 workers; wrk -t 2 and the backend beside): http keepalive and close req/s",
	"scaling":    "one tether at GOMAXPROCS 1 and 2 (-scaling-procs) on the same CPUs (-scaling-cpus, default all), wrk and the backend pinned on the load CPU: http keepalive and close req/s and the ratio",
	"latency":    "open loop: HAProxy's closed-loop keepalive peak, then 70% of it offered to each (tether bench --rate): p50/p99, tether p99 / HAProxy's",
	"syscalls":   "strace -c -f on each proxy during short separate loads (http keepalive, http close, tcp connect): syscalls per request by kind, EAGAIN",
	"tbench":     "tether bench --compare (short vs long) through tether and direct",
	"loadgen":    "load generator check: tether bench against wrk (long) and ab (short)",
	"https":      "TLS 1.3 termination: new handshakes and keepalive requests per proxy CPU-s",
	"idle-https": "RSS per idle keepalive TLS client conn",
	"cost":       "A/B: the warm pool and reuse counters (min_idle 8, counters) against neither (-tags tether_nocounters, min_idle 0)",
}

// options are the command line.
type options struct {
	only, skip  map[string]bool
	quick       bool
	rounds      int
	tetherA     string
	tetherB     string
	labelA      string
	labelB      string
	loadTether  string
	dur         time.Duration
	redisN      int
	idleConns   int
	idleKAConns int
	idleSettle  time.Duration
	loadgenN    int
	outDir      string
	keep        bool
	proxyCPU    int
	loadCPU     int
	splice      bool
	deferAccept bool

	scalingProcs []int  // GOMAXPROCS values of the scaling scenario
	scalingCPUs  string // taskset CPU list of tether there ("" = every CPU)
}

func (o *options) wants(s string) bool {
	if len(o.only) > 0 && !o.only[s] {
		return false
	}
	return !o.skip[s]
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	only := fs.String("only", "", "run only these scenarios, comma-separated (see below)")
	skip := fs.String("skip", "", "skip these scenarios, comma-separated")
	fs.BoolVar(&o.quick, "quick", false, "development run: 2 s loads, 1 s iperf3 and strace loads, 2 s idle settle, fewer requests and conns")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds of every load; each figure is the median (targets alternate order between rounds)")
	fs.StringVar(&o.tetherA, "tether", "", "tether `binary` to measure (default: build ./cmd/tether into the temp dir)")
	fs.StringVar(&o.tetherB, "tether-b", "", "a second tether `binary`, measured in the same run beside -tether (column tether-b, ratio b/a)")
	fs.StringVar(&o.labelA, "label", "tether", "column name of -tether")
	fs.StringVar(&o.labelB, "label-b", "tether-b", "column name of -tether-b")
	fs.StringVar(&o.loadTether, "loadgen-tether", "", "tether `binary` whose bench command is the load generator (default: the build of ./cmd/tether, so -tether and -tether-b face the same load)")
	fs.DurationVar(&o.dur, "d", 0, "duration of each timed load: wrk, iperf3, tether bench, HTTPS (default 5s, -quick 2s)")
	fs.IntVar(&o.redisN, "redis-n", 0, "redis-benchmark -n (default 200000, -quick 20000)")
	fs.IntVar(&o.idleConns, "idle-conns", 0, "idle proxied tcp conns per batch (default 5000, -quick 1000)")
	fs.IntVar(&o.idleKAConns, "idle-ka-conns", 0, "idle keepalive client conns per batch (default 5000, -quick 500)")
	fs.DurationVar(&o.idleSettle, "idle-settle", 0, "idle time after the last conn of a batch opened before RSS is read (default 10s as issue 13 reads it, -quick 2s)")
	fs.IntVar(&o.loadgenN, "loadgen-n", 0, "requests per short run of the load generator check (default 20000, -quick 5000)")
	fs.StringVar(&o.outDir, "out", "bench/results", "directory of the JSON result")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs)")
	fs.IntVar(&o.proxyCPU, "proxy-cpu", 0, "CPU the proxy runs alone on")
	fs.IntVar(&o.loadCPU, "load-cpu", 1, "CPU of the load generators and backends")
	fs.BoolVar(&o.splice, "haproxy-splice", false, "add option splice-auto to HAProxy's tcp mode")
	fs.BoolVar(&o.deferAccept, "defer-accept", false, "http and https modes: every proxy accepts a conn only once its first bytes came (TCP_DEFER_ACCEPT: HAProxy bind defer-accept, nginx listen deferred, tether defer_accept = \"1s\"); off in issue 13's method")
	procsList := fs.String("scaling-procs", "1,2", "scaling scenario: GOMAXPROCS values, comma-separated; each is a column, ratios over the first")
	fs.StringVar(&o.scalingCPUs, "scaling-cpus", "", "scaling scenario: taskset CPU `list` tether runs on at every GOMAXPROCS (default every CPU; give it CPUs apart from -load-cpu on a bigger machine, e.g. 0,1 with -load-cpu 2)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: go run ./bench/compare [flags]\n\nflags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nscenarios (-only, -skip):\n")
		for _, s := range scenarioNames {
			fmt.Fprintf(w, "  %-11s %s\n", s, scenarioHelp[s])
		}
		fmt.Fprintf(w, "  (tcp = iperf3,redis,connect,idle)\n")
		fmt.Fprintf(w, "\nissue 13's table: go run ./bench/compare -tether /tmp/tb/tether -rounds 3\n")
		fmt.Fprintf(w, "before/after: go run ./bench/compare -tether /tmp/before/tether -tether-b /tmp/after/tether -rounds 3\n")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.only, err = scenarioSet(*only); err != nil {
		return nil, err
	}
	if o.skip, err = scenarioSet(*skip); err != nil {
		return nil, err
	}
	if o.scalingProcs, err = parseProcsList(*procsList); err != nil {
		return nil, err
	}
	if o.rounds < 1 {
		return nil, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.redisN, 200000, 20000)
	def(&o.idleConns, 5000, 1000)
	def(&o.idleKAConns, 5000, 500)
	def(&o.loadgenN, 20000, 5000)
	if o.idleSettle == 0 {
		o.idleSettle = 10 * time.Second
		if o.quick {
			o.idleSettle = 2 * time.Second
		}
	}
	if o.dur == 0 {
		o.dur = 5 * time.Second
		if o.quick {
			o.dur = 2 * time.Second
		}
	}
	if o.labelA == o.labelB {
		return nil, fmt.Errorf("-label and -label-b are both %q", o.labelA)
	}
	return o, nil
}

func scenarioSet(list string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if s == "tcp" { // iperf3, redis, connect and idle together
			m["iperf3"], m["redis"], m["connect"], m["idle"] = true, true, true, true
			continue
		}
		if !slices.Contains(scenarioNames, s) {
			return nil, fmt.Errorf("unknown scenario %q (known: tcp, %s)", s, strings.Join(scenarioNames, ", "))
		}
		m[s] = true
	}
	return m, nil
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == echoFlag {
		os.Exit(echoMain(os.Args[2]))
	}
	o, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	// A closed stdout (| head) must not kill the run before it has stopped
	// its processes and removed its temp dir: writes fail instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o, os.Stdout))
}

// run does the whole comparison; it returns the exit code.
func run(ctx context.Context, o *options, stdout io.Writer) int {
	t0 := time.Now()
	tmp, err := os.MkdirTemp("", "tether-compare.")
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		return 1
	}
	_ = os.Chmod(tmp, 0o755) // nginx workers run as nobody
	e := &env{o: o, tmp: tmp, ps: newProcs(tmp), ports: newPorts()}
	defer func() {
		e.ps.stopAll()
		if o.keep {
			e.logf("temp dir kept: %s", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()
	if err := e.prepare(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		return 1
	}
	var sections []*section
	for _, s := range scenarioNames {
		if !o.wants(s) || ctx.Err() != nil {
			continue
		}
		e.logf("== %s: %s", s, scenarioHelp[s])
		secs, err := e.scenario(ctx, s)
		if err != nil {
			e.warnf("%s: %v", s, err)
		}
		sections = append(sections, secs...)
	}
	if ctx.Err() != nil {
		e.warnf("interrupted: the figures below are partial")
	}
	for _, s := range sections {
		s.finish()
		s.print(stdout, o.rounds)
	}
	printTargets(stdout, sections)
	wall := time.Since(t0)
	path, err := e.writeResults(sections, wall)
	if err != nil {
		e.warnf("JSON: %v", err)
	} else {
		fmt.Fprintf(stdout, "\nJSON: %s\n", path)
	}
	fmt.Fprintf(stdout, "wall time: %s\n", wall.Round(time.Second))
	if ctx.Err() != nil {
		return 130
	}
	return 0
}

// scenario runs one scenario and returns its tables.
func (e *env) scenario(ctx context.Context, name string) ([]*section, error) {
	switch name {
	case "iperf3":
		return one(e.runIperf(ctx))
	case "redis":
		return one(e.runRedis(ctx))
	case "connect":
		return one(e.runConnect(ctx))
	case "idle":
		return one(e.runIdleTCP(ctx))
	case "http":
		return e.runHTTP(ctx)
	case "idle-http":
		return one(e.runIdleKeepalive(ctx, "http"))
	case "allcores":
		return one(e.runAllCores(ctx))
	case "scaling":
		return one(e.runScaling(ctx))
	case "latency":
		return one(e.runLatency(ctx))
	case "syscalls":
		return one(e.runSyscalls(ctx))
	case "tbench":
		return one(e.runTetherBench(ctx))
	case "loadgen":
		return e.runLoadgenCheck(ctx)
	case "https":
		return one(e.runHTTPS(ctx))
	case "idle-https":
		return one(e.runIdleKeepalive(ctx, "https"))
	case "cost":
		return one(e.runCost(ctx))
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

func one(s *section, err error) ([]*section, error) {
	if s == nil {
		return nil, err
	}
	return []*section{s}, err
}

// outPath is where the JSON goes: -out/compare-DATE.json.
func (e *env) outPath() string {
	return filepath.Join(e.o.outDir, "compare-"+time.Now().Format("20060102-150405")+".json")
}
