package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// addrPort returns a net.Addr as sock_diag reports it (IPv4 unmapped).
func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// freshListener listens on 127.0.0.1 on a port no other socket uses, as
// local or remote port (no TIME_WAIT left by an earlier run, say). While
// the listener holds the port no connect(2) picks it as an ephemeral port,
// so every socket a count by this port finds is one the test made.
func freshListener(t *testing.T) (*net.TCPListener, uint16) {
	t.Helper()
	var rejected []net.Listener
	defer func() {
		for _, ln := range rejected {
			_ = ln.Close()
		}
	}()
	for range 50 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		self := addrPort(ln.Addr())
		socks, err := sockopt.Sockets()
		if err != nil {
			_ = ln.Close()
			t.Fatal(err)
		}
		clean := !slices.ContainsFunc(socks, func(s sockopt.Socket) bool {
			used := s.Local.Port() == self.Port() || s.Remote.Port() == self.Port()
			return used && !(s.State == sockopt.StateListen && s.Local == self)
		})
		if clean {
			t.Cleanup(func() { _ = ln.Close() })
			return ln.(*net.TCPListener), self.Port()
		}
		rejected = append(rejected, ln) // kept open so the next try gets another port
	}
	t.Fatal("no port free of other sockets in 50 tries")
	return nil, 0
}

// connPair dials ln and accepts: client is the dialed end, server the
// accepted one. Both are closed when the test ends.
func connPair(t *testing.T, ln *net.TCPListener) (client, server *net.TCPConn) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.AcceptTCP()
	if err != nil {
		_ = c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		_ = s.Close()
	})
	return c.(*net.TCPConn), s
}

// closeFirst closes first, waits until second reads EOF, then closes
// second: first's tuple goes to TIME_WAIT, second's goes away.
func closeFirst(t *testing.T, first, second *net.TCPConn) {
	t.Helper()
	_ = first.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer's close: read %d, %v; want EOF", n, err)
	}
	_ = second.Close()
}

type tuple struct{ local, remote netip.AddrPort }

func tupleOf(c net.Conn) tuple { return tuple{addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())} }

// waitStates polls sock_diag until every tuple is in its wanted state (0 =
// no such socket any more).
func waitStates(t *testing.T, want map[tuple]sockopt.State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		socks, err := sockopt.Sockets()
		if err != nil {
			t.Fatal(err)
		}
		got := map[tuple]sockopt.State{}
		for _, s := range socks {
			tu := tuple{s.Local, s.Remote}
			if _, ok := want[tu]; ok {
				got[tu] = s.State
			}
		}
		ok := true
		for tu, st := range want {
			ok = ok && got[tu] == st
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets never reached their states:\nwant %v\ngot  %v", want, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runConns(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cmdConns(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func connsJSON(t *testing.T, args ...string) connsReport {
	t.Helper()
	code, out, errOut := runConns(t, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("conns %v: exit %d: %s", args, code, errOut)
	}
	var rep connsReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	return rep
}

// counts is a row's expected counts; states not named are 0.
type counts map[sockopt.State]int

// checkGroup asserts one row of a report: all eleven states present, each
// count exact, and the total.
func checkGroup(t *testing.T, rep connsReport, block, side string, want counts) {
	t.Helper()
	for _, b := range rep.Blocks {
		if b.Name != block {
			continue
		}
		for _, g := range b.Groups {
			if g.Side != side {
				continue
			}
			if len(g.States) != 11 {
				t.Errorf("%s/%s: %d states in the JSON, want all 11: %v", block, side, len(g.States), g.States)
			}
			total := 0
			for _, st := range sockopt.States() {
				total += want[st]
				if n, ok := g.States[st.String()]; !ok || n != want[st] {
					t.Errorf("%s/%s: %s = %d (present %v), want %d", block, side, st, n, ok, want[st])
				}
			}
			if g.Total != total {
				t.Errorf("%s/%s: total %d, want %d", block, side, g.Total, total)
			}
			return
		}
	}
	t.Errorf("no group %s/%s in %+v", block, side, rep.Blocks)
}

// tableRow returns the counts of the text table's row labelled label under
// the block whose title starts with title, read through the header.
func tableRow(t *testing.T, table, title, label string) map[string]string {
	t.Helper()
	lines := strings.Split(table, "\n")
	header := strings.Fields(lines[0])
	in := false
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, " ") {
			in = strings.HasPrefix(l, title)
			continue
		}
		if in && strings.HasPrefix(l, "  "+label+" ") {
			f := strings.Fields(strings.TrimPrefix(l, "  "+label))
			if len(f) != len(header) {
				t.Fatalf("row %q has %d fields, header %d", l, len(f), len(header))
			}
			row := map[string]string{}
			for i, h := range header {
				row[h] = f[i]
			}
			return row
		}
	}
	t.Fatalf("no row %q under %q in\n%s", label, title, table)
	return nil
}

func checkWidth(t *testing.T, out string) {
	t.Helper()
	for l := range strings.SplitSeq(out, "\n") {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line of %d columns (> 100): %q", n, l)
		}
	}
}

func TestConnsColumnsCoverTheElevenStates(t *testing.T) {
	var cols []sockopt.State
	for _, c := range connsColumns {
		cols = append(cols, c.state)
	}
	all := sockopt.States()
	slices.Sort(cols)
	slices.Sort(all)
	if !slices.Equal(cols, all) {
		t.Fatalf("columns %v, states %v", cols, all)
	}
}

// Sockets in known states on one port: --port counts them exactly, as
// local (local port = P) and remote (remote port = P), in JSON and table.
func TestConnsPortCountsKnownStatesExactly(t *testing.T) {
	ln, port := freshListener(t)

	estC, estS := connPair(t, ln)

	twSPeer, twS := connPair(t, ln) // the accepted end closes first: TIME_WAIT on local
	closeFirst(t, twS, twSPeer)

	twC, twCPeer := connPair(t, ln) // the dialed end closes first: TIME_WAIT on remote
	closeFirst(t, twC, twCPeer)

	halfC, halfS := connPair(t, ln) // the dialed end half-closes: FIN_WAIT2 / CLOSE_WAIT
	if err := halfC.CloseWrite(); err != nil {
		t.Fatal(err)
	}

	waitStates(t, map[tuple]sockopt.State{
		tupleOf(estC):    sockopt.StateEstablished,
		tupleOf(estS):    sockopt.StateEstablished,
		tupleOf(twS):     sockopt.StateTimeWait,
		tupleOf(twSPeer): 0,
		tupleOf(twC):     sockopt.StateTimeWait,
		tupleOf(twCPeer): 0,
		tupleOf(halfC):   sockopt.StateFinWait2,
		tupleOf(halfS):   sockopt.StateCloseWait,
	})

	p := strconv.Itoa(int(port))
	wantLocal := counts{sockopt.StateListen: 1, sockopt.StateEstablished: 1, sockopt.StateTimeWait: 1, sockopt.StateCloseWait: 1}
	wantRemote := counts{sockopt.StateEstablished: 1, sockopt.StateTimeWait: 1, sockopt.StateFinWait2: 1}
	hp := "127.0.0.1:" + p
	rep := connsJSON(t, "--port", p, "--port", hp)
	for _, name := range []string{p, hp} {
		checkGroup(t, rep, name, "local", wantLocal)
		checkGroup(t, rep, name, "remote", wantRemote)
	}

	// The table shows the same numbers, "." for zero, within 100 columns.
	code, out, errOut := runConns(t, "--port", p)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	checkWidth(t, out)
	for side, want := range map[string]map[string]string{
		"local":  {"LISTEN": "1", "ESTAB": "1", "TIME-W": "1", "CLOSE-W": "1", "FIN-W2": ".", "SYN-R": ".", "TOTAL": "4"},
		"remote": {"LISTEN": ".", "ESTAB": "1", "TIME-W": "1", "CLOSE-W": ".", "FIN-W2": "1", "CLOSED": ".", "TOTAL": "3"},
	} {
		row := tableRow(t, out, "port "+p, side)
		for h, v := range want {
			if row[h] != v {
				t.Errorf("table %s %s = %q, want %q\n%s", side, h, row[h], v, out)
			}
		}
	}
	if !strings.Contains(out, "TIME-W=TIME_WAIT") || !strings.Contains(out, "remote: remote port") {
		t.Errorf("no legend under the table:\n%s", out)
	}
}

const connsConfig = `
[pool.web]
members = [{ address = "127.0.0.1:%d" }]
[[virtual_server]]
name = "a"
listen = "127.0.0.1:%d"
pool = "web"
[[virtual_server]]
name = "b"
listen = ":%d"
pool = "web"
`

// The test plays tether: it accepts clients on the virtual servers' listen
// addresses and dials the member. Client side, server side (shared by the
// two virtual servers of the pool) and member side count exactly.
func TestConnsConfigSplitsClientServerAndMemberSide(t *testing.T) {
	lnA, portA := freshListener(t)
	lnB, portB := freshListener(t) // listen ":port": any local IP
	lnM, portM := freshListener(t)
	path := writeConfig(t, fmt.Sprintf(connsConfig, portM, portA, portB))

	cA, sA := connPair(t, lnA)   // a client of a, established
	tM, mM := connPair(t, lnM)   // tether's established conn to the member
	tM2, mM2 := connPair(t, lnM) // the member closes first: TIME_WAIT on the member side
	closeFirst(t, mM2, tM2)
	cB, sB := connPair(t, lnB) // tether closes a client of b first: TIME_WAIT on b's client side
	closeFirst(t, sB, cB)
	cB2, sB2 := connPair(t, lnB) // a client of b half-closes: CLOSE_WAIT on b's client side
	if err := cB2.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitStates(t, map[tuple]sockopt.State{
		tupleOf(cA): sockopt.StateEstablished, tupleOf(sA): sockopt.StateEstablished,
		tupleOf(tM): sockopt.StateEstablished, tupleOf(mM): sockopt.StateEstablished,
		tupleOf(mM2): sockopt.StateTimeWait, tupleOf(tM2): 0,
		tupleOf(sB): sockopt.StateTimeWait, tupleOf(cB): 0,
		tupleOf(cB2): sockopt.StateFinWait2, tupleOf(sB2): sockopt.StateCloseWait,
	})

	rep := connsJSON(t, "-c", path)
	// The clients' own ends (local ephemeral port, remote = listen) are on
	// no side: client side is what tether holds.
	checkGroup(t, rep, "a", "client", counts{sockopt.StateListen: 1, sockopt.StateEstablished: 1})
	checkGroup(t, rep, "b", "client", counts{sockopt.StateListen: 1, sockopt.StateTimeWait: 1, sockopt.StateCloseWait: 1})
	for _, vs := range []string{"a", "b"} {
		checkGroup(t, rep, vs, "server", counts{sockopt.StateEstablished: 1})
		checkGroup(t, rep, vs, "member", counts{sockopt.StateListen: 1, sockopt.StateEstablished: 1, sockopt.StateTimeWait: 1})
	}
	for _, b := range rep.Blocks {
		if b.Kind != "virtual_server" || b.Pool != "web" || !slices.Equal(b.SharedBy, []string{"a", "b"}) {
			t.Errorf("block %s: kind %q pool %q shared_by %v", b.Name, b.Kind, b.Pool, b.SharedBy)
		}
	}

	code, out, errOut := runConns(t, "-c", path)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	checkWidth(t, out)
	if !strings.Contains(out, `pool "web" (shared by a, b)`) {
		t.Errorf("the shared pool is not said so:\n%s", out)
	}
	row := tableRow(t, out, `virtual server "a"`, "member side")
	if row["TIME-W"] != "1" || row["LISTEN"] != "1" || row["ESTAB"] != "1" || row["TOTAL"] != "3" {
		t.Errorf("member side of a: %v\n%s", row, out)
	}
	if row := tableRow(t, out, `virtual server "b"`, "client side"); row["CLOSE-W"] != "1" || row["TOTAL"] != "3" {
		t.Errorf("client side of b: %v\n%s", row, out)
	}
}

// On a writer that is not a terminal, --watch appends one table per
// refresh after a timestamp line and writes no ANSI escape.
func TestConnsWatchOnANonTerminalPrintsTimestampedTables(t *testing.T) {
	_, port := freshListener(t)
	p := strconv.Itoa(int(port))
	code, out, errOut := runConns(t, "--port", p, "--watch", "--count", "2", "--interval", "10ms")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("ANSI escape in non-terminal output:\n%q", out)
	}
	var stamps, headers, rows int
	for l := range strings.SplitSeq(out, "\n") {
		if ts, ok := strings.CutPrefix(l, "--- "); ok {
			if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", ts); err != nil {
				t.Errorf("timestamp line %q: %v", l, err)
			}
			stamps++
		}
		if strings.Contains(l, "LISTEN") && strings.Contains(l, "TOTAL") {
			headers++
		}
		if strings.HasPrefix(l, "  local ") {
			rows++
			if f := strings.Fields(l); f[1] != "1" { // our listener
				t.Errorf("local row %q: LISTEN should be 1", l)
			}
		}
	}
	if stamps != 2 || headers != 2 || rows != 2 {
		t.Errorf("%d timestamp lines, %d headers, %d local rows; want 2 each:\n%s", stamps, headers, rows, out)
	}

	// --json --watch: one JSON object per line.
	code, out, _ = runConns(t, "--port", p, "--count", "2", "--interval", "10ms", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 2 {
		t.Fatalf("exit %d, %d lines:\n%s", code, len(lines), out)
	}
	for _, l := range lines {
		var rep connsReport
		if err := json.Unmarshal([]byte(l), &rep); err != nil || rep.Time.IsZero() {
			t.Errorf("line %q: %v", l, err)
		}
	}
}

// --watch without --count runs until ctx ends (Ctrl-C), then exits 0.
func TestConnsWatchStopsWhenContextEnds(t *testing.T) {
	_, port := freshListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := cmdConns(ctx, []string{"--port", strconv.Itoa(int(port)), "--watch", "--interval", "20ms"}, &out, &errb)
	if code != exitOK || strings.Count(out.String(), "--- ") < 1 {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errb.String(), out.String())
	}
}

// openPTY returns a pseudo-terminal pair through /dev/ptmx (no pty
// package needed). A system without one (a minimal container with no
// devpts) skips the test, and fails it under CI, whose machines have one.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		socktest.Missing(t, "no pseudo-terminal here (%v): the terminal path is untested", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		_ = m.Close()
		socktest.Missing(t, "cannot open the pty's slave (%v): the terminal path is untested", err)
	}
	return m, s
}

// On a terminal, --watch clears the screen and redraws each refresh.
func TestConnsWatchOnATerminalRedraws(t *testing.T) {
	_, port := freshListener(t)
	master, slave := openPTY(t)
	defer master.Close()
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the slave is closed
		read <- b
	}()
	var errb bytes.Buffer
	code := cmdConns(context.Background(), []string{"--port", strconv.Itoa(int(port)), "--count", "2", "--interval", "10ms"}, slave, &errb)
	_ = slave.Close()
	var out []byte
	select {
	case out = <-read:
	case <-time.After(10 * time.Second):
		_ = master.Close()
		<-read
		t.Fatal("the terminal output never ended")
	}
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n := bytes.Count(out, []byte(ansiClear)); n != 2 {
		t.Errorf("%d screen clears, want 2:\n%q", n, out)
	}
	if bytes.Contains(out, []byte("\n--- ")) {
		t.Errorf("timestamp separators on a terminal:\n%q", out)
	}
}

func TestConnsUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--json"},
		{"--port", "8080", "extra"},
		{"--port", "http"},
		{"--port", "0"},
		{"--port", "70000"},
		{"--port", "127.0.0.1"},
		{"--port", "8080", "--interval", "0s"},
		{"--port", "8080", "--count", "-1"},
		{"--bogus"},
	} {
		code, _, errOut := runConns(t, args...)
		if code != exitUsage || !strings.Contains(errOut, "usage") {
			t.Errorf("conns %q: exit %d, stderr %q; want %d with the usage", args, code, errOut, exitUsage)
		}
	}
	if code, _, _ := runConns(t, "-h"); code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
}

func TestConnsBadConfigExits1NamingTheKey(t *testing.T) {
	path := writeConfig(t, goodConfig+"bogus = 1\n")
	code, out, errOut := runConns(t, "-c", path)
	if code != exitError || !strings.Contains(errOut, `unknown key "virtual_server.bogus"`) || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runConns(t, "-c", path+".missing")
	if code != exitError || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestConnsEndpointParsing(t *testing.T) {
	ip := netip.MustParseAddr
	cases := []struct {
		in    string
		bare  bool
		port  uint16
		any   bool
		addrs []netip.Addr
	}{
		{"8080", true, 8080, true, nil},
		{":8080", false, 8080, true, nil},
		{"0.0.0.0:80", false, 80, true, nil},
		{"[::]:80", false, 80, true, nil},
		{"127.0.0.1:80", false, 80, false, []netip.Addr{ip("127.0.0.1")}},
		{"[::1]:80", false, 80, false, []netip.Addr{ip("::1")}},
		{"[::ffff:10.0.0.1]:80", false, 80, false, []netip.Addr{ip("10.0.0.1")}}, // unmapped, as sock_diag reports
		{"[fe80::1%lo]:80", false, 80, false, []netip.Addr{ip("fe80::1")}},       // sock_diag has no zone
	}
	for _, tc := range cases {
		e, err := parseEndpoint(context.Background(), tc.in, tc.bare)
		if err != nil || e.port != tc.port || e.any != tc.any || !slices.Equal(e.addrs, tc.addrs) {
			t.Errorf("parseEndpoint(%q) = %+v, %v", tc.in, e, err)
		}
	}
	for _, bad := range []string{"8080", "127.0.0.1", "host:http", "[::1]:99999"} {
		if e, err := parseEndpoint(context.Background(), bad, false); err == nil {
			t.Errorf("parseEndpoint(%q) = %+v, want an error", bad, e)
		}
	}
	e := endpoint{port: 80, addrs: []netip.Addr{ip("127.0.0.1")}}
	if !e.matches(netip.MustParseAddrPort("127.0.0.1:80")) || e.matches(netip.MustParseAddrPort("127.0.0.2:80")) ||
		e.matches(netip.MustParseAddrPort("127.0.0.1:81")) || (endpoint{port: 0, any: true}).matches(netip.MustParseAddrPort("1.2.3.4:0")) {
		t.Error("endpoint.matches")
	}
}
