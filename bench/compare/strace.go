package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// sysCount is one syscall's line of strace -c: calls, and how many failed.
type sysCount struct {
	Calls, Errors int64
}

// straceSummary is a strace -c table by syscall name, and its total line.
type straceSummary struct {
	Calls map[string]sysCount
	Total sysCount
}

// parseStraceSummary reads strace -c's table:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 32.10    0.079654          12      6418           writev
//	  0.02    0.000038           2        13        13 shutdown
//	------ ----------- ----------- --------- --------- ----------------
//	100.00    0.248117           6     38551        13 total
//
// The errors column is blank where no call failed, so the columns are
// cut where the dashes of the separator line put them, not by fields.
func parseStraceSummary(text string) (straceSummary, error) {
	sum := straceSummary{Calls: map[string]sysCount{}}
	lines := strings.Split(text, "\n")
	hdr := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "% time") {
			hdr = i
			break
		}
	}
	if hdr < 0 || hdr+1 >= len(lines) {
		return sum, fmt.Errorf("strace -c: no header line in %.200q", text)
	}
	names := strings.Fields(strings.ReplaceAll(lines[hdr], "% time", "%time"))
	cols := dashColumns(lines[hdr+1])
	if len(cols) != len(names) {
		return sum, fmt.Errorf("strace -c: %d header names but %d columns: %.120q", len(names), len(cols), lines[hdr+1])
	}
	at := func(name string) int {
		for i, n := range names {
			if n == name {
				return i
			}
		}
		return -1
	}
	ic, ie, is := at("calls"), at("errors"), at("syscall")
	if ic < 0 || is != len(names)-1 {
		return sum, fmt.Errorf("strace -c: header %q lacks calls or does not end with syscall", lines[hdr])
	}
	cell := func(l string, i int) string {
		a, b := cols[i][0], cols[i][1]
		if i == len(cols)-1 {
			b = len(l) // a long syscall name runs past its dashes
		}
		if a >= len(l) {
			return ""
		}
		return strings.TrimSpace(l[a:min(b, len(l))])
	}
	sawTotal := false
	for _, l := range lines[hdr+2:] {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "---") {
			continue
		}
		name := cell(l, is)
		calls, err := strconv.ParseInt(cell(l, ic), 10, 64)
		if name == "" || err != nil {
			return sum, fmt.Errorf("strace -c: bad line %.120q", l)
		}
		var c sysCount
		c.Calls = calls
		if ie >= 0 {
			if s := cell(l, ie); s != "" {
				if c.Errors, err = strconv.ParseInt(s, 10, 64); err != nil {
					return sum, fmt.Errorf("strace -c: bad errors in %.120q", l)
				}
			}
		}
		if name == "total" {
			sum.Total, sawTotal = c, true
			continue
		}
		sum.Calls[name] = c
	}
	if !sawTotal {
		return sum, fmt.Errorf("strace -c: no total line in %.200q", text)
	}
	return sum, nil
}

// dashColumns returns the [start, end) of each run of '-' in a line.
func dashColumns(l string) [][2]int {
	var cols [][2]int
	start := -1
	for i := 0; i <= len(l); i++ {
		dash := i < len(l) && l[i] == '-'
		switch {
		case dash && start < 0:
			start = i
		case !dash && start >= 0:
			cols = append(cols, [2]int{start, i})
			start = -1
		}
	}
	return cols
}

// failedCalls counts strace's lines of failed calls (strace -f -e
// status=failed -o FILE) by syscall and errno name:
//
//	4711  read(12, 0xc000180000, 4096) = -1 EAGAIN (Resource temporarily unavailable)
//
// The key is "read EAGAIN". Lines that are not a failed call's (signals,
// exits) are skipped.
func failedCalls(text string) map[string]int64 {
	out := map[string]int64{}
	for _, l := range strings.Split(text, "\n") {
		i := strings.LastIndex(l, " = -1 ") // strace pads the call to a column: "4096)    = -1"
		if i < 0 || !strings.HasSuffix(strings.TrimRight(l[:i], " "), ")") {
			continue
		}
		errno, _, _ := strings.Cut(l[i+len(" = -1 "):], " ")
		head := strings.TrimSpace(l[:i])
		var name string
		if j := strings.Index(head, "<... "); j >= 0 { // "<... read resumed>"
			name, _, _ = strings.Cut(head[j+len("<... "):], " ")
		} else {
			if f := strings.Fields(head); len(f) > 1 {
				if _, err := strconv.Atoi(f[0]); err == nil { // -f: the pid first
					head = strings.TrimSpace(head[len(f[0])+1:])
				}
			}
			name, _, _ = strings.Cut(head, "(")
		}
		if name == "" || errno == "" || strings.ContainsAny(name, " \t") {
			continue
		}
		out[name+" "+errno]++
	}
	return out
}

// syscallGroups are the rows of the syscalls table: issue 13's named ones,
// each the sum of the calls that do the same work.
var syscallGroups = []struct {
	key, label string
	calls      []string
}{
	{"read", "read / recvfrom / recvmsg / readv", []string{"read", "recvfrom", "recvmsg", "readv"}},
	{"write", "write / sendto / sendmsg / writev", []string{"write", "sendto", "sendmsg", "writev"}},
	{"splice", "splice / pipe2", []string{"splice", "pipe2", "pipe"}},
	{"accept", "accept4 / accept", []string{"accept4", "accept"}},
	{"connect", "connect", []string{"connect"}},
	{"socket", "socket", []string{"socket"}},
	{"setsockopt", "setsockopt", []string{"setsockopt"}},
	{"getsockopt", "getsockopt", []string{"getsockopt"}},
	{"getsockname", "getsockname / getpeername", []string{"getsockname", "getpeername"}},
	{"epoll_ctl", "epoll_ctl", []string{"epoll_ctl"}},
	{"epoll_wait", "epoll_wait / epoll_pwait", []string{"epoll_wait", "epoll_pwait", "epoll_pwait2"}},
	{"close", "close / shutdown", []string{"close", "shutdown"}},
	{"futex", "futex / nanosleep / sched_yield (Go runtime)", []string{"futex", "nanosleep", "sched_yield", "clock_nanosleep"}},
}

// syscallFigures turns a strace -c summary and the failed-call counts of
// a second pass into per-request figures: per_req.GROUP, total, other,
// errors; reqs and reqs2 are the requests each pass completed.
func syscallFigures(sum straceSummary, reqs int64, failed map[string]int64, reqs2 int64) figures {
	figs := figures{}
	if reqs <= 0 {
		return figs
	}
	per := func(n int64) float64 { return float64(n) / float64(reqs) }
	figs["requests"] = float64(reqs)
	figs["total"] = per(sum.Total.Calls)
	figs["errors"] = per(sum.Total.Errors)
	listed := int64(0)
	for _, g := range syscallGroups {
		var n int64
		for _, c := range g.calls {
			n += sum.Calls[c].Calls
		}
		listed += n
		figs[g.key] = per(n)
	}
	figs["other"] = per(sum.Total.Calls - listed)
	var readErrs int64
	for _, c := range syscallGroups[0].calls {
		readErrs += sum.Calls[c].Errors
	}
	figs["read_errors"] = per(readErrs)
	for name, c := range sum.Calls { // every call, for the JSON
		figs["sys."+name] = per(c.Calls)
	}
	if failed != nil && reqs2 > 0 {
		var again, readAgain int64
		for k, n := range failed {
			name, errno, _ := strings.Cut(k, " ")
			if errno == "EAGAIN" || errno == "EWOULDBLOCK" {
				again += n
				for _, c := range syscallGroups[0].calls {
					if name == c {
						readAgain += n
					}
				}
			}
		}
		figs["requests2"] = float64(reqs2)
		figs["eagain"] = float64(again) / float64(reqs2)
		figs["read_eagain"] = float64(readAgain) / float64(reqs2)
	}
	return figs
}

// topCalls lists the n most frequent calls of a summary as "name calls".
func topCalls(sum straceSummary, n int) []string {
	type kv struct {
		name string
		c    sysCount
	}
	var all []kv
	for k, v := range sum.Calls {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].c.Calls != all[j].c.Calls {
			return all[i].c.Calls > all[j].c.Calls
		}
		return all[i].name < all[j].name
	})
	var out []string
	for _, x := range all[:min(n, len(all))] {
		out = append(out, fmt.Sprintf("%s %d", x.name, x.c.Calls))
	}
	return out
}

// topFailed lists the n most frequent failed calls as "name ERRNO per-request".
func topFailed(failed map[string]int64, reqs int64, n int) []string {
	keys := make([]string, 0, len(failed))
	for k := range failed {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if failed[keys[i]] != failed[keys[j]] {
			return failed[keys[i]] > failed[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s %.2f", k, float64(failed[k])/float64(max(reqs, 1))))
	}
	return out
}
