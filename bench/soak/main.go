// Command soak is issue 14's soak run, not run in CI: the real tether
// binary under half of its peak load for 30 minutes while its members are
// killed and started again every few minutes. Each minute it records
// tether's RSS, open fds and goroutines, and the load's p99, requests and
// errors; it passes when the last five minutes are within 10% of the first
// five.
//
//	go run ./bench/soak                      # the full run: 30 min, a restart every 4 min
//	go run ./bench/soak -quick               # development: 3 min, a restart every minute
//	go run ./bench/soak -json soak.json      # the rows and the verdict as JSON too
//
// What runs, all on loopback (a 127.77.R.0/24 of its own, R random; the
// clients' sources in 127.78.R.0/24):
//   - tether (go build ./cmd/tether into a temp dir, default GOMAXPROCS),
//     with an http virtual server over pool "web" and a tcp virtual server
//     over pool "echo", both of the same two members, tcp health checks
//     every 500 ms; its admin API on the same loopback address.
//   - two members, each this program re-executed as a process of its own
//     (TETHER_SOAK_MEMBER in its environment): HTTP/1.1 (net/http) and a tcp
//     echo. Every -restart-every one of them, in turn, is killed (SIGKILL)
//     and started again after min(5 s, -restart-every/4); the first restart
//     comes at half -restart-every, so that the first and the last window
//     see as many restarts.
//   - the load, in this process. The mix: 85% GET on keepalive conns
//     (which tether closes every 100 requests, its default), 5% POST of
//     1 KiB on them, 8% GET on a conn of its own (Connection: close), 2% tcp
//     echo of 64 bytes on a conn of its own; every request times out after
//     10 s. First the peak: 10 s of that mix in a closed loop, 32 workers
//     each with a keepalive conn sending back to back. Then an open loop at
//     -load (50%) of that peak: requests due on a fixed schedule, whether or
//     not the earlier ones were answered, 64 keepalive conns and up to 32
//     short conns at a time, each request's latency counted from when it was
//     due, so a stall or a backlog shows up in full (no coordinated
//     omission).
//
// Each period (-sample, a minute) gives a row: the requests that ended in
// it and their p50/p99/max, the errors, tether's CPU, and the means of
// tether's RSS (/proc/PID/status VmRSS), fds (/proc/PID/fd), goroutines
// (go_goroutines of /metrics) and member conns (the admin API's pools),
// each read every twelfth of a period (a reading due while the one before
// still runs is skipped, and counted in a warning). The requests and errors
// in the JSON are also split by kind; an error's cause is the status tether
// answered or what the socket said (reset, closed early, timeout ...).
//
// The verdict compares the mean of each row figure over the first -window
// with its mean over the last one. RSS, fds, goroutines and p99 must not
// grow by more than 10% of the first window's mean plus a small absolute
// slack (see judged: 1 MiB, 10 fds, 20 goroutines, 1 ms): a soak looks for leaks and slowdowns, so a figure that
// fell is reported ("lower") but passes. The exit code is 0 when every one
// holds, 1 when one does not (or the run failed), 130 when interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	duration     time.Duration
	restartEvery time.Duration
	window       time.Duration
	sample       time.Duration // the period of a row
	peakTime     time.Duration // the closed-loop peak measurement
	load         float64       // the open loop's rate as a fraction of the peak
	rate         float64       // a fixed rate instead (no peak measurement)
	quick        bool
	jsonPath     string
	tether       string
	keep         bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 0, "length of the open-loop load (default 30m, -quick 3m)")
	fs.DurationVar(&o.restartEvery, "restart-every", 0, "kill a member and start it again this often, the two in turn (default 4m, -quick 1m)")
	fs.DurationVar(&o.window, "window", 0, "the first and the last window whose means are compared (default 5m, -quick 1m)")
	fs.BoolVar(&o.quick, "quick", false, "development run: 3 min, a restart every minute, 1 min windows")
	fs.StringVar(&o.jsonPath, "json", "", "also write the rows, events and verdict as JSON to this `file`")
	fs.Float64Var(&o.load, "load", 0.5, "offered rate as a fraction of the measured peak")
	fs.StringVar(&o.tether, "tether", "", "tether `binary` to soak (default: go build ./cmd/tether into the temp dir)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (tether's config and log, the members' logs)")
	// Hidden: the smoke test's short periods, and a fixed rate.
	fs.DurationVar(&o.sample, "sample", 0, "")
	fs.DurationVar(&o.peakTime, "peak-time", 10*time.Second, "")
	fs.Float64Var(&o.rate, "rate", 0, "")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: go run ./bench/soak [flags]\n\n")
		fmt.Fprintf(w, "Soaks tether at half of its peak load with members restarting; one row per minute;\n")
		fmt.Fprintf(w, "passes when RSS, fds, goroutines and p99 of the last window are within 10%% of the first.\n\nflags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage == "" {
				return // hidden
			}
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  -%s %s\n    \t%s\n", f.Name, name, usage)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	def := func(v *time.Duration, full, quick time.Duration) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.duration, 30*time.Minute, 3*time.Minute)
	def(&o.restartEvery, 4*time.Minute, time.Minute)
	def(&o.window, 5*time.Minute, time.Minute)
	if o.sample == 0 {
		o.sample = time.Minute
	}
	switch {
	case o.sample < 500*time.Millisecond:
		return nil, fmt.Errorf("-sample %v: want at least 500ms", o.sample)
	case o.duration < o.sample:
		return nil, fmt.Errorf("-duration %v is shorter than a period (%v)", o.duration, o.sample)
	case o.window < o.sample:
		return nil, fmt.Errorf("-window %v is shorter than a period (%v)", o.window, o.sample)
	case 2*o.windowRows() > o.rows():
		return nil, fmt.Errorf("-window %v: the first and the last window overlap in %v", o.window, o.duration)
	case o.restartEvery < 2*time.Second:
		return nil, fmt.Errorf("-restart-every %v: want at least 2s", o.restartEvery)
	case o.load <= 0 || o.load > 1:
		return nil, fmt.Errorf("-load %v: want a fraction in (0, 1]", o.load)
	case o.rate < 0:
		return nil, fmt.Errorf("-rate %v: want > 0", o.rate)
	case o.rate == 0 && o.peakTime < time.Second:
		return nil, fmt.Errorf("-peak-time %v: want at least 1s", o.peakTime)
	}
	return o, nil
}

// rows is the number of periods: the duration in whole periods.
func (o *options) rows() int { return int(o.duration / o.sample) }

// windowRows is the number of periods in a window (whole periods).
func (o *options) windowRows() int { return int(o.window / o.sample) }

// downTime is how long a killed member stays down.
func (o *options) downTime() time.Duration { return min(5*time.Second, o.restartEvery/4) }

func main() {
	if spec := os.Getenv(memberEnv); spec != "" {
		os.Exit(memberMain(spec))
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o, os.Stdout, os.Stderr))
}

// run does the whole soak and returns the exit code: 0 passed, 1 failed
// (or could not run), 130 interrupted.
func run(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	var mu sync.Mutex // the restarts log from a goroutine of their own
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	rep, err := soak(ctx, o, logf)
	if rep != nil && err != nil {
		rep.Incomplete = err.Error()
	}
	if rep != nil {
		rep.print(stdout)
		if o.jsonPath != "" {
			if err := rep.writeJSON(o.jsonPath); err != nil {
				logf("JSON: %v", err)
			} else {
				fmt.Fprintf(stdout, "\nJSON: %s\n", o.jsonPath)
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		logf("interrupted")
		return 130
	case err != nil:
		logf("soak: %v", err)
		return 1
	case !rep.Verdict.Pass:
		return 1
	}
	return 0
}
