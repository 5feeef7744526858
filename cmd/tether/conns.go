package main

// tether conns: a census of TCP states for the addresses of a config or
// for given ports, read from the kernel with sock_diag (sockopt.Sockets),
// never by parsing ss or /proc.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

const connsUsage = `usage: tether conns (-c FILE | --port [HOST:]PORT ...) [--json] [--watch] [--interval 1s] [--count N]

  -c FILE            one block per virtual server: client side (local = listen address, LISTEN
                     included), server side (remote = a pool member), member side (the members'
                     own sockets, for members on this host)
  --port [HOST:]PORT repeatable; per port: local (local port = PORT) and remote (remote port = PORT)
  --json             one JSON object per refresh
  --watch            refresh every --interval until Ctrl-C; --count N stops after N refreshes
`

// connsColumns is the table's column order: a connection's life from
// listen to closed, with the abbreviated header of each state.
var connsColumns = []struct {
	state sockopt.State
	head  string
}{
	{sockopt.StateListen, "LISTEN"},
	{sockopt.StateEstablished, "ESTAB"},
	{sockopt.StateSynSent, "SYN-S"},
	{sockopt.StateSynRecv, "SYN-R"},
	{sockopt.StateFinWait1, "FIN-W1"},
	{sockopt.StateFinWait2, "FIN-W2"},
	{sockopt.StateCloseWait, "CLOSE-W"},
	{sockopt.StateClosing, "CLOSING"},
	{sockopt.StateLastAck, "LAST-A"},
	{sockopt.StateTimeWait, "TIME-W"},
	{sockopt.StateClosed, "CLOSED"},
}

const connsLegend = `ESTAB=ESTABLISHED  SYN-S/SYN-R=SYN_SENT/SYN_RECV  FIN-W1/FIN-W2=FIN_WAIT1/FIN_WAIT2
CLOSE-W=CLOSE_WAIT  LAST-A=LAST_ACK  TIME-W=TIME_WAIT  .=0  (sock_diag)
`

const connsLegendConfig = `client side: local = the listen address (LISTEN included); server side: remote = a pool member
member side (this host): the members' own sockets (local = a member address), for members on
             this host; TIME_WAIT lands there when a member closes first
`

const connsLegendPorts = `local: local port = PORT; remote: remote port = PORT
`

// connsReport is one census; its JSON form is what --json prints.
type connsReport struct {
	Time   time.Time    `json:"time"`
	Blocks []connsBlock `json:"blocks"`
}

// connsBlock is one virtual server (Kind "virtual_server") or one --port
// value (Kind "port").
type connsBlock struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Title string `json:"title"`
	// Listen, Pool, Members and SharedBy are set for virtual servers.
	// SharedBy lists every virtual server on the pool when there are
	// several: the server side then counts all of their connections.
	Listen   string       `json:"listen,omitempty"`
	Pool     string       `json:"pool,omitempty"`
	Members  []string     `json:"members,omitempty"`
	SharedBy []string     `json:"shared_by,omitempty"`
	Groups   []connsGroup `json:"groups"`
}

// connsGroup is one row: the sockets matching one side of a block.
type connsGroup struct {
	// Side is client | server | member (virtual servers) or local | remote
	// (ports).
	Side  string `json:"side"`
	Label string `json:"label"`
	// States holds all eleven states by name ("ESTABLISHED", "TIME_WAIT"
	// ...), zeros included.
	States map[string]int `json:"states"`
	Total  int            `json:"total"`

	match func(sockopt.Socket) bool
}

// endpoint matches a socket address against a configured host:port. A
// host that is empty or unspecified (0.0.0.0, ::) matches any IP.
type endpoint struct {
	port  uint16
	any   bool
	addrs []netip.Addr
}

func (e endpoint) matches(ap netip.AddrPort) bool {
	if e.port == 0 || ap.Port() != e.port {
		return false
	}
	return e.any || slices.Contains(e.addrs, ap.Addr())
}

// parseEndpoint reads "host:port" (host may be empty, an IP or a name,
// resolved now) or, when bareOK, a bare port.
func parseEndpoint(ctx context.Context, s string, bareOK bool) (endpoint, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if !bareOK || strings.Contains(s, ":") {
			return endpoint{}, fmt.Errorf("%q: want host:port", s)
		}
		host, portStr = "", s
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: port %q is not a number in 0-65535", s, portStr)
	}
	e := endpoint{port: uint16(port)}
	if host == "" {
		e.any = true
		return e, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.WithZone("").Unmap() // sock_diag addresses carry no zone
		if a.IsUnspecified() {
			e.any = true
		} else {
			e.addrs = []netip.Addr{a}
		}
		return e, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: %w", s, err)
	}
	for _, a := range addrs {
		e.addrs = append(e.addrs, a.WithZone("").Unmap())
	}
	return e, nil
}

// localAddrs returns this host's interface addresses; loopback counts as
// local whatever the interfaces say.
func localAddrs() []netip.Addr {
	var out []netip.Addr
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil // members then count as local only on loopback
	}
	for _, ia := range ifaddrs {
		if ipn, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

func (e endpoint) onThisHost(local []netip.Addr) bool {
	if e.any {
		return true
	}
	for _, a := range e.addrs {
		if a.IsLoopback() || slices.Contains(local, a) {
			return true
		}
	}
	return false
}

// connsBlocksFromConfig builds one block per virtual server. Addresses that
// cannot be resolved are reported as warnings and match nothing.
func connsBlocksFromConfig(ctx context.Context, cfg *config.Config) (blocks []connsBlock, warnings []string) {
	users := map[string][]string{} // pool -> virtual servers using it, file order
	for _, vs := range cfg.VirtualServers {
		users[vs.Pool] = append(users[vs.Pool], vs.Name)
	}
	local := localAddrs()
	for _, vs := range cfg.VirtualServers {
		b := connsBlock{Kind: "virtual_server", Name: vs.Name, Listen: vs.Listen, Pool: vs.Pool}
		listen, err := parseEndpoint(ctx, vs.Listen, false)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("virtual_server %q: listen %v", vs.Name, err))
		}
		note := ""
		if err == nil && listen.port == 0 {
			note = " (port 0 is chosen at run time: client side not counted)"
		}
		var members []endpoint
		for i, m := range cfg.Pools[vs.Pool].Members {
			b.Members = append(b.Members, m.Address)
			e, err := parseEndpoint(ctx, m.Address, false)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("pool %q: member %d: address %v", vs.Pool, i+1, err))
				continue
			}
			members = append(members, e)
		}
		poolDesc := fmt.Sprintf("pool %q", vs.Pool)
		if u := users[vs.Pool]; len(u) > 1 {
			b.SharedBy = u
			poolDesc += " (shared by " + strings.Join(u, ", ") + ")"
		}
		b.Title = fmt.Sprintf("virtual server %q  listen %s%s  %s", vs.Name, vs.Listen, note, poolDesc)

		b.Groups = append(b.Groups,
			connsGroup{Side: "client", Label: "client side", match: func(s sockopt.Socket) bool {
				return listen.matches(s.Local)
			}},
			connsGroup{Side: "server", Label: "server side", match: func(s sockopt.Socket) bool {
				return slices.ContainsFunc(members, func(e endpoint) bool { return e.matches(s.Remote) })
			}},
		)
		var here []endpoint
		for _, e := range members {
			if e.onThisHost(local) {
				here = append(here, e)
			}
		}
		if len(here) > 0 {
			b.Groups = append(b.Groups, connsGroup{Side: "member", Label: "member side", match: func(s sockopt.Socket) bool {
				return slices.ContainsFunc(here, func(e endpoint) bool {
					// A member listening on 0.0.0.0 / :: for an address
					// of this host: its LISTEN socket is the member's too.
					return e.matches(s.Local) ||
						(s.State == sockopt.StateListen && s.Local.Port() == e.port && s.Local.Addr().IsUnspecified())
				})
			}})
		}
		blocks = append(blocks, b)
	}
	return blocks, warnings
}

// connsBlockForPort builds the block of one --port value.
func connsBlockForPort(name string, e endpoint) connsBlock {
	return connsBlock{Kind: "port", Name: name, Title: "port " + name, Groups: []connsGroup{
		{Side: "local", Label: "local", match: func(s sockopt.Socket) bool { return e.matches(s.Local) }},
		{Side: "remote", Label: "remote", match: func(s sockopt.Socket) bool { return e.matches(s.Remote) }},
	}}
}

// census fills a copy of blocks with the counts of socks.
func census(blocks []connsBlock, socks []sockopt.Socket, now time.Time) connsReport {
	r := connsReport{Time: now, Blocks: make([]connsBlock, len(blocks))}
	for i, b := range blocks {
		b.Groups = slices.Clone(b.Groups)
		for j := range b.Groups {
			g := &b.Groups[j]
			g.States = make(map[string]int, len(connsColumns))
			for _, st := range sockopt.States() {
				g.States[st.String()] = 0
			}
			g.Total = 0
			for _, s := range socks {
				if g.match(s) {
					g.States[s.State.String()]++
					g.Total++
				}
			}
		}
		r.Blocks[i] = b
	}
	return r
}

// writeConnsTable prints a report as a table: a header, then per block a
// title line and one row per group, right-aligned counts, "." for zero.
func writeConnsTable(w io.Writer, r connsReport) {
	labelW := 0
	for _, b := range r.Blocks {
		for _, g := range b.Groups {
			labelW = max(labelW, len(g.Label))
		}
	}
	labelW += 2 // rows are indented under their block's title
	widths := make([]int, len(connsColumns)+1)
	for i, c := range connsColumns {
		widths[i] = len(c.head)
	}
	widths[len(connsColumns)] = len("TOTAL")
	for _, b := range r.Blocks {
		for _, g := range b.Groups {
			for i, c := range connsColumns {
				widths[i] = max(widths[i], len(strconv.Itoa(g.States[c.state.String()])))
			}
			widths[len(connsColumns)] = max(widths[len(connsColumns)], len(strconv.Itoa(g.Total)))
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "%-*s", labelW, "")
	for i, c := range connsColumns {
		fmt.Fprintf(&sb, " %*s", widths[i], c.head)
	}
	fmt.Fprintf(&sb, " %*s\n", widths[len(connsColumns)], "TOTAL")
	for _, b := range r.Blocks {
		sb.WriteString(b.Title + "\n")
		for _, g := range b.Groups {
			fmt.Fprintf(&sb, "  %-*s", labelW-2, g.Label)
			for i, c := range connsColumns {
				fmt.Fprintf(&sb, " %*s", widths[i], dotZero(g.States[c.state.String()]))
			}
			fmt.Fprintf(&sb, " %*s\n", widths[len(connsColumns)], dotZero(g.Total))
		}
	}
	_, _ = io.WriteString(w, sb.String())
}

func dotZero(n int) string {
	if n == 0 {
		return "."
	}
	return strconv.Itoa(n)
}

// connsLegendFor returns the footer explaining the headers and the sides
// that blocks use.
func connsLegendFor(blocks []connsBlock) string {
	legend := connsLegend
	hasKind := func(k string) bool {
		return slices.ContainsFunc(blocks, func(b connsBlock) bool { return b.Kind == k })
	}
	if hasKind("virtual_server") {
		legend += connsLegendConfig
	}
	if hasKind("port") {
		legend += connsLegendPorts
	}
	return legend
}

// isTerminal reports whether w is a terminal (a TCGETS ioctl succeeds).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ANSI: cursor home, then clear the screen.
const ansiClear = "\x1b[H\x1b[2J"

// cmdConns runs `tether conns`. ctx ending (Ctrl-C) ends --watch with exit 0.
func cmdConns(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, connsUsage) }
	file := fs.String("c", "", "config `FILE`")
	var ports []string
	fs.Func("port", "`[HOST:]PORT` to count (repeatable)", func(s string) error {
		ports = append(ports, s)
		return nil
	})
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Bool("watch", false, "refresh every --interval until interrupted")
	interval := fs.Duration("interval", time.Second, "time between refreshes with --watch")
	count := fs.Int("count", 0, "stop after `N` refreshes (implies --watch); 0 = until interrupted")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "tether conns: %s\n%s", msg, connsUsage)
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *file == "" && len(ports) == 0:
		return usageErr("-c FILE or --port is required")
	case *interval <= 0:
		return usageErr(fmt.Sprintf("--interval %s must be > 0", *interval))
	case *count < 0:
		return usageErr(fmt.Sprintf("--count %d must be >= 0", *count))
	}
	if *count > 0 {
		*watch = true
	}

	var blocks []connsBlock
	if *file != "" {
		cfg, err := config.LoadFile(*file)
		if err != nil {
			fmt.Fprintf(stderr, "tether: invalid configuration:\n%v\n", err)
			return exitError
		}
		b, warnings := connsBlocksFromConfig(ctx, cfg)
		for _, w := range warnings {
			fmt.Fprintf(stderr, "warning: %s (counted as no match)\n", w)
		}
		blocks = append(blocks, b...)
	}
	for _, p := range ports {
		e, err := parseEndpoint(ctx, p, true)
		if err == nil && e.port == 0 {
			err = fmt.Errorf("%q: port must be 1-65535", p)
		}
		if err != nil {
			return usageErr("--port " + err.Error())
		}
		blocks = append(blocks, connsBlockForPort(p, e))
	}

	return connsLoop(ctx, blocks, connsOutput{
		w: stdout, json: *asJSON, watch: *watch, tty: *watch && isTerminal(stdout),
		interval: *interval, count: *count,
	}, stderr)
}

type connsOutput struct {
	w        io.Writer
	json     bool
	watch    bool
	tty      bool // clear and redraw (ANSI) instead of appending
	interval time.Duration
	count    int // refreshes before stopping; 0 = until ctx ends
}

// connsLoop takes one census, or with watch one per interval until ctx
// ends or count censuses were printed.
func connsLoop(ctx context.Context, blocks []connsBlock, out connsOutput, stderr io.Writer) int {
	legend := connsLegendFor(blocks)
	var ticker *time.Ticker
	if out.watch {
		ticker = time.NewTicker(out.interval)
		defer ticker.Stop()
	}
	for n := 1; ; n++ {
		socks, err := sockopt.Sockets()
		if err != nil {
			fmt.Fprintf(stderr, "tether conns: %v\n", err)
			return exitError
		}
		rep := census(blocks, socks, time.Now())
		switch {
		case out.json:
			enc := json.NewEncoder(out.w)
			if !out.watch {
				enc.SetIndent("", "  ")
			}
			if err := enc.Encode(rep); err != nil {
				fmt.Fprintf(stderr, "tether conns: %v\n", err)
				return exitError
			}
		case out.tty:
			fmt.Fprintf(out.w, "%stether conns  %s  every %s, Ctrl-C to stop\n\n",
				ansiClear, rep.Time.Format("2006-01-02 15:04:05"), out.interval)
			writeConnsTable(out.w, rep)
			fmt.Fprint(out.w, "\n"+legend)
		case out.watch:
			// A log stays clean: the legend once, then a timestamp line
			// before each table.
			if n == 1 {
				fmt.Fprint(out.w, legend+"\n")
			}
			fmt.Fprintf(out.w, "--- %s\n", rep.Time.Format("2006-01-02T15:04:05.000Z07:00"))
			writeConnsTable(out.w, rep)
		default:
			writeConnsTable(out.w, rep)
			fmt.Fprint(out.w, "\n"+legend)
		}
		if !out.watch || (out.count > 0 && n >= out.count) {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-ticker.C:
		}
	}
}
