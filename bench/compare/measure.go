package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tetherproxy/tether/bench"
	"github.com/tetherproxy/tether/sockopt"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat and /proc/stat times:
// 100 on every Linux architecture Go supports (getconf CLK_TCK).
const clockTick = 10 * time.Millisecond

// procTicks parses utime+stime (fields 14 and 15) from a /proc/PID/stat
// line; the command name (field 2) may hold spaces and parentheses, so the
// fields are counted after its last ')'.
func procTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in /proc/PID/stat line %.60q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/PID/stat line %.60q", stat)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime in %.60q", stat)
	}
	return u + s, nil
}

// cpuTime sums the user+system time of pids; a pid that is gone counts 0.
func cpuTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		n, err := procTicks(string(b))
		if err == nil {
			ticks += n
		}
	}
	return time.Duration(ticks) * clockTick
}

// cpuLine is one CPU's line of /proc/stat, in ticks.
type cpuLine struct {
	User  int64 // user + nice + system: time charged to processes
	Busy  int64 // User + irq + softirq + steal
	Total int64 // Busy + idle + iowait
}

// parseProcStat returns the cpuN lines of /proc/stat by CPU number.
func parseProcStat(text string) (map[int]cpuLine, error) {
	out := make(map[int]cpuLine)
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var v [8]int64 // user nice system idle iowait irq softirq steal
		for i := range v {
			if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("/proc/stat %s: %w", f[0], err)
			}
		}
		user := v[0] + v[1] + v[2]
		busy := user + v[5] + v[6] + v[7]
		out[n] = cpuLine{User: user, Busy: busy, Total: busy + v[3] + v[4]}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cpuN line in /proc/stat")
	}
	return out, nil
}

func readProcStat() map[int]cpuLine {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	m, _ := parseProcStat(string(b))
	return m
}

// meter measures one load run: the CPU time of the proxy's processes and
// how busy the proxy's and the load's CPUs were.
type meter struct {
	pids      []int
	proxyCPU  int
	loadCPU   int
	cpu0      time.Duration
	stat0     map[int]cpuLine
	startedAt time.Time
}

func startMeter(pids []int, proxyCPU, loadCPU int) *meter {
	return &meter{pids: pids, proxyCPU: proxyCPU, loadCPU: loadCPU,
		cpu0: cpuTime(pids), stat0: readProcStat(), startedAt: time.Now()}
}

// usage is what a meter saw.
type usage struct {
	ProxyCPU    time.Duration // utime+stime of the proxy's processes
	ProxyBusy   time.Duration // all busy time of the proxy's CPU (softirq included)
	ProxyUtil   float64       // busy share of the proxy's CPU
	LoadUtil    float64       // busy share of the load's CPU
	Foreign     float64       // share of the proxy's CPU used by other processes
	Wall        time.Duration
	HaveProxies bool
}

func (m *meter) stop() usage {
	u := usage{ProxyCPU: cpuTime(m.pids) - m.cpu0, Wall: time.Since(m.startedAt), HaveProxies: len(m.pids) > 0}
	s1 := readProcStat()
	a, b := m.stat0[m.proxyCPU], s1[m.proxyCPU]
	if tot := b.Total - a.Total; tot > 0 {
		u.ProxyUtil = float64(b.Busy-a.Busy) / float64(tot)
		if u.HaveProxies {
			u.Foreign = max(0, float64(b.User-a.User-int64(u.ProxyCPU/clockTick))/float64(tot))
		}
	}
	u.ProxyBusy = time.Duration(b.Busy-a.Busy) * clockTick
	la, lb := m.stat0[m.loadCPU], s1[m.loadCPU]
	if tot := lb.Total - la.Total; tot > 0 {
		u.LoadUtil = float64(lb.Busy-la.Busy) / float64(tot)
	}
	return u
}

// put adds a usage's figures to figs under prefix.
func (u usage) put(figs figures, prefix string) {
	figs[prefix+"cpu_proxy_util"] = u.ProxyUtil
	figs[prefix+"cpu_load_util"] = u.LoadUtil
	figs[prefix+"cpu_proxy_busy_s"] = u.ProxyBusy.Seconds()
	if u.HaveProxies {
		figs[prefix+"cpu_s"] = u.ProxyCPU.Seconds()
		figs[prefix+"cpu_proxy_foreign"] = u.Foreign
	}
}

// rssKiB returns VmRSS of pid from /proc/PID/status (0 when gone).
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return statusField(string(b), "VmRSS:")
}

func statusField(text, key string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func sumRSS(pids []int) int64 {
	var n int64
	for _, p := range pids {
		n += rssKiB(p)
	}
	return n
}

func sumFDs(pids []int) int {
	n := 0
	for _, p := range pids {
		es, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		n += len(es)
	}
	return n
}

// kernelKiB is memory in use that is neither page cache nor process
// anonymous memory (MemTotal - MemFree - Buffers - Cached - AnonPages):
// slab, page tables, kernel stacks, socket buffers.
func kernelKiB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	t := string(b)
	return statusField(t, "MemTotal:") - statusField(t, "MemFree:") - statusField(t, "Buffers:") -
		statusField(t, "Cached:") - statusField(t, "AnonPages:")
}

// netstatField reads one TcpExt counter from /proc/net/netstat's text:
// a header line of names and a line of values per group.
func netstatField(text, group, name string) (int64, bool) {
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(h) == 0 || h[0] != group+":" || len(v) != len(h) || v[0] != group+":" {
			continue
		}
		for j := range h {
			if h[j] == name {
				n, err := strconv.ParseInt(v[j], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// timeWaitOverflow is the kernel's TCPTimeWaitOverflow counter: TIME_WAIT
// sockets not kept because tcp_max_tw_buckets was reached.
func timeWaitOverflow() int64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0
	}
	n, _ := netstatField(string(b), "TcpExt", "TCPTimeWaitOverflow")
	return n
}

// twSides counts TIME_WAIT sockets by the side that closed first.
type twSides struct{ Client, Front, Back, Backend int }

// timeWaitBySide classifies TIME_WAIT sockets on the front and back ports
// (front == back: no proxy, client and backend only), through sock_diag.
func timeWaitBySide(front, back int) (twSides, error) {
	socks, err := sockopt.Sockets()
	if err != nil {
		return twSides{}, err
	}
	return classifyTimeWait(socks, front, back), nil
}

func classifyTimeWait(socks []sockopt.Socket, front, back int) twSides {
	var n twSides
	for _, s := range socks {
		if s.State != sockopt.StateTimeWait {
			continue
		}
		lp, rp := int(s.Local.Port()), int(s.Remote.Port())
		switch {
		case lp == back:
			n.Backend++ // the backend closed first
		case rp == back && front != back:
			n.Back++ // the proxy closed first toward the backend
		case lp == front:
			n.Front++ // the proxy closed first toward the client
		case rp == front:
			n.Client++ // the client closed first
		}
	}
	return n
}

// establishedTo counts established sockets whose remote port is port (a
// proxy's conns to its backend; ss lists both ends of a loopback conn).
func establishedTo(port int) int {
	socks, err := sockopt.Sockets()
	if err != nil {
		return -1
	}
	n := 0
	for _, s := range socks {
		if s.State == sockopt.StateEstablished && int(s.Remote.Port()) == port {
			n++
		}
	}
	return n
}

// tetherBench runs a tether bench load (argv) through target t while
// metering t's processes r, notes the command and any foreign CPU in s, and
// returns the bench's figures with the meter's, its result and the usage.
func (e *env) tetherBench(ctx context.Context, s *section, t target, r *running, argv []string) (figures, bench.Result, usage, error) {
	m := startMeter(r.pids, e.o.proxyCPU, e.o.loadCPU)
	run, err := runLoad(ctx, e.o.dur+time.Minute, nil, argv...)
	u := m.stop()
	if err != nil {
		return nil, bench.Result{}, u, err
	}
	res, err := parseTetherBench(run.out)
	if err != nil {
		return nil, bench.Result{}, u, err
	}
	s.command(t.name, argv)
	e.foreign(s, t, u)
	figs := figures{}
	putTetherBench(figs, "", res[0])
	u.put(figs, "")
	return figs, res[0], u, nil
}
