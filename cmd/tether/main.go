// Command tether is a TCP-terminating reverse proxy and load balancer.
//
//	tether demo                 see short vs long connections and pooling, on a built-in setup
//	tether bench TARGET         load generator (short vs long connections, TIME_WAIT by side)
//	tether run -c FILE          serve the configuration until SIGTERM/SIGINT (SIGUSR2: hot upgrade)
//	tether check -c FILE        validate a configuration (exit 0 valid, 1 invalid)
//	tether check -c FILE --print        ... and print it with every default and profile resolved
//	tether check --print-defaults       print the built-in defaults
//	tether conns -c FILE | --port PORT  census of TCP states per virtual server side
//	tether ctl [-c FILE | --admin URL] COMMAND  the admin API's client (status, pools, drain, reload ...)
//	tether version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // bad configuration, a listener that cannot bind, ...
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: tether <command> [flags]

commands:
  demo [--duration 3s] [--html FILE] [--keep]
                                in-process members + tether, short vs long connections,
                                pooled vs unpooled member connections, in one table
  bench [flags] TARGET          load generator: --conn short|long, --compare, -c, -d, -n,
                                --rate, --json, --html FILE (tether bench -h for all)
  run -c FILE [--pid-file F]    run the proxy (SIGTERM/SIGINT: stop accepting, drain, exit;
                                SIGHUP: reload the config; SIGUSR2: hot binary upgrade)
  check -c FILE [--print]       validate a config; --print shows it with every default and profile resolved
  check --print-defaults        show the built-in defaults
  conns -c FILE | --port [HOST:]PORT...  [--json] [--watch [--interval 1s] [--count N]]
                                live census of the eleven TCP states per side (sock_diag)
  ctl [-c FILE | --admin URL] [--token-file F] [--json] COMMAND
                                the admin API's client: status | pools | members POOL |
                                enable|disable|drain POOL ADDRESS | conns VS [--limit N] | reload |
                                upgrade
  version                       print the version
`

// run dispatches a command. ctx ends on SIGTERM/SIGINT.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "conns":
		return cmdConns(ctx, args[1:], stdout, stderr)
	case "ctl":
		return cmdCtl(ctx, args[1:], stdout, stderr)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "tether: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}
