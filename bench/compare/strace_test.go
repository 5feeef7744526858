package main

import (
	"strings"
	"testing"
)

// testdata/strace-*: real output of strace 6.1 (-c -f -p on the proxy's
// processes; -f -qq -e status=failed for the failed calls).
func TestParseStraceSummaryReadsCallsAndBlankErrors(t *testing.T) {
	sum, err := parseStraceSummary(testdata(t, "strace-c-nginx-close.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sysCount{
		"writev": {6418, 0}, "close": {6419, 0}, "accept4": {6421, 0}, "epoll_wait": {6439, 0},
		"epoll_ctl": {6421, 0}, "recvfrom": {6420, 0}, "shutdown": {13, 13},
	}
	if len(sum.Calls) != len(want) {
		t.Errorf("calls %v, want %v", sum.Calls, want)
	}
	for k, w := range want {
		if sum.Calls[k] != w {
			t.Errorf("%s: %+v, want %+v", k, sum.Calls[k], w)
		}
	}
	if sum.Total != (sysCount{38551, 13}) {
		t.Errorf("total %+v, want 38551 calls, 13 errors", sum.Total)
	}
}

func TestParseStraceSummaryOfAGoProcess(t *testing.T) {
	sum, err := parseStraceSummary(testdata(t, "strace-c-tether-connect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range map[string]sysCount{"setsockopt": {11458, 0}, "connect": {674, 674}, "read": {4049, 1353}, "accept4": {696, 22}, "mmap": {7, 0}} {
		if sum.Calls[k] != w {
			t.Errorf("%s: %+v, want %+v", k, sum.Calls[k], w)
		}
	}
	if sum.Total != (sysCount{28672, 2049}) {
		t.Errorf("total %+v", sum.Total)
	}
	var n, e int64
	for _, c := range sum.Calls {
		n, e = n+c.Calls, e+c.Errors
	}
	if n != sum.Total.Calls || e != sum.Total.Errors {
		t.Errorf("lines sum to %d calls, %d errors; total says %+v: a line was lost", n, e, sum.Total)
	}
	f := syscallFigures(sum, 674, nil, 0)
	for k, w := range map[string]float64{"total": 28672.0 / 674, "setsockopt": 17, "connect": 1, "getsockname": 3, "accept": 696.0 / 674, "errors": 2049.0 / 674, "read_errors": 1353.0 / 674} {
		if !near(f[k], w) {
			t.Errorf("%s = %v per request, want %v", k, f[k], w)
		}
	}
	var groups float64
	for _, g := range syscallGroups {
		groups += f[g.key]
	}
	if !near(groups+f["other"], f["total"]) {
		t.Errorf("groups %v + other %v != total %v", groups, f["other"], f["total"])
	}
	if _, ok := f["eagain"]; ok {
		t.Error("EAGAIN figures without a failed-calls pass")
	}
}

func TestParseStraceSummaryRejectsWhatIsNotATable(t *testing.T) {
	for _, text := range []string{
		"",
		"strace: attach: ptrace(PTRACE_SEIZE, 1234): Operation not permitted\n",
		"% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n",
	} {
		if _, err := parseStraceSummary(text); err == nil {
			t.Errorf("parseStraceSummary(%q) = nil error", text)
		}
	}
}

func TestFailedCallsCountsByErrnoAndSkipsSignals(t *testing.T) {
	text := testdata(t, "strace-failed-tether-connect.txt")
	got := failedCalls(text)
	want := map[string]int64{"accept4 EAGAIN": 1, "connect EINPROGRESS": 44, "read EAGAIN": 14}
	if len(got) != len(want) {
		t.Errorf("failedCalls = %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %d, want %d", k, got[k], w)
		}
	}
	resumed := failedCalls("2954  <... read resumed>0xc000, 4096) = -1 EAGAIN (Resource temporarily unavailable)\n")
	if resumed["read EAGAIN"] != 1 {
		t.Errorf("a resumed line: %v", resumed)
	}
	f := syscallFigures(straceSummary{Calls: map[string]sysCount{"read": {10, 2}}, Total: sysCount{10, 2}}, 5, got, 20)
	if !near(f["eagain"], 15.0/20) || !near(f["read_eagain"], 14.0/20) {
		t.Errorf("eagain %v read_eagain %v per request, want 15/20 and 14/20 (the second pass's requests)", f["eagain"], f["read_eagain"])
	}
	if !strings.Contains(strings.Join(topFailed(got, 20, 2), ", "), "connect EINPROGRESS 2.20") {
		t.Errorf("topFailed = %v", topFailed(got, 20, 2))
	}
}
