package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// probesPerPeriod is how many times a period reads tether's RSS, fds,
// goroutines and member conns (evenly, the last at the period's end).
const probesPerPeriod = 12

// soak runs everything and returns the report; an error means the run
// could not be done as designed (the report, when not nil, holds what it
// measured until then).
func soak(ctx context.Context, o *options, logf func(string, ...any)) (rep *report, err error) {
	tmp, err := os.MkdirTemp("", "tether-soak.")
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.keep {
			logf("temp dir kept: %s", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()
	a, err := pickAddrs()
	if err != nil {
		return nil, err
	}
	bin := o.tether
	if bin == "" {
		logf("building ./cmd/tether")
		if bin, err = buildTether(ctx, tmp); err != nil {
			return nil, err
		}
	}
	rep = newReport(o, bin)
	var warnMu sync.Mutex // the restarts warn from a goroutine of their own
	warnf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		warnMu.Lock()
		rep.Warnings = append(rep.Warnings, msg)
		warnMu.Unlock()
		logf("WARNING: %s", msg)
	}

	var members [2]*memberProc
	for i, spec := range a.members {
		if members[i], err = startMember(spec, tmp); err != nil {
			return nil, err
		}
		defer members[i].kill()
	}
	tp, err := startTether(ctx, bin, tmp, a)
	if err != nil {
		return nil, err
	}
	defer func() {
		if e := tp.stop(); e != nil {
			warnf("tether's exit: %v: %s", e, tp.tail(5))
		}
	}()
	if !waitUntil(ctx, 10*time.Second, func() bool { n, _ := tp.membersUp(); return n == 4 }) {
		n, err := tp.membersUp()
		return nil, fmt.Errorf("tether's health checks see %d of 4 members up after 10s (%v): %s", n, err, tp.tail(5))
	}
	logf("tether %d on %s (http) and %s (tcp), admin %s; members %s and %s", tp.pid(), a.web, a.echo, a.admin, a.members[0].HTTP, a.members[1].HTTP)

	cl := &client{a: a}
	rep.Rate = o.rate
	if o.rate == 0 {
		logf("peak: %d workers, each with a keepalive conn, the mix back to back for %s", peakConns, o.peakTime)
		rps, failed := peak(ctx, cl, o.peakTime)
		rep.PeakRPS, rep.PeakErrors = math.Round(rps), failed
		rep.Rate = math.Round(rps * o.load)
		if failed > 0 {
			warnf("the peak measurement had %d failed requests", failed)
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if rep.Rate < 10 {
			return rep, fmt.Errorf("peak %.0f req/s: too low to soak at", rps)
		}
	}
	logf("open loop at %.0f req/s for %s, a member killed every %s (down %s)", rep.Rate, o.duration, o.restartEvery, o.downTime())

	// A pause after the peak: its short conns' TIME_WAITs and tether's
	// pools settle before the first row.
	if sleepUntil(ctx, time.Now().Add(min(2*time.Second, o.sample/2))) != nil {
		return rep, ctx.Err()
	}
	n := o.rows()
	start := time.Now()
	end := start.Add(time.Duration(n) * o.sample)
	rec := newRecorder()
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		openLoop(lctx, cl, rec, rep.Rate, start, end)
	}()
	defer func() { stopLoad(); <-loadDone }()

	var evMu sync.Mutex
	note := func(what string) {
		evMu.Lock()
		rep.Events = append(rep.Events, event{AtS: time.Since(start).Seconds(), What: what})
		evMu.Unlock()
		logf("%s", what)
	}
	rctx, stopRestarts := context.WithCancel(ctx)
	restartsDone := make(chan struct{})
	go func() {
		defer close(restartsDone)
		restartMembers(rctx, o, start, end, members, note, warnf)
	}()
	// Before the members' kills (defers run last first).
	defer func() { stopRestarts(); <-restartsDone }()

	first, err := tp.probe()
	if err != nil {
		return rep, fmt.Errorf("probe tether: %w", err)
	}
	// The probes run on their own schedule, so that a slow one (a busy
	// machine, a slow admin API) never delays a period's end: each is
	// counted in the period of the time it was due.
	accs := make([]probeAcc, n)
	var accMu sync.Mutex
	pctx, stopProbes := context.WithCancel(ctx)
	probesDone := make(chan struct{})
	var failedProbes, missedProbes int
	go func() {
		defer close(probesDone)
		failedProbes, missedProbes = probeEach(pctx, tp, start, o.sample, n, func(k int, pr probe, at time.Time) {
			accMu.Lock()
			accs[k].add(pr, at)
			accMu.Unlock()
		})
	}()
	defer func() { stopProbes(); <-probesDone }()

	stats := make([]*periodStats, 0, n)
	for k := 1; k <= n; k++ {
		if sleepUntil(ctx, start.Add(time.Duration(k)*o.sample)) != nil {
			break
		}
		st := rec.swap()
		if k == n {
			// The requests still in flight at the end count in the last row.
			<-loadDone
			st.merge(rec.swap())
		}
		stats = append(stats, st)
		if !tp.alive() {
			return rep, fmt.Errorf("tether exited: %s", tp.tail(10))
		}
		accMu.Lock()
		r := accs[k-1].row(k, o.sample, st)
		accMu.Unlock()
		logf("period %d/%d: %d requests, %d errors, p99 %s ms, RSS %.1f MiB, %.0f fds, %.0f goroutines", k, n, r.Requests, r.Errors, fmtMs(r.P99Ms), r.RSSMiB, r.FDs, r.Goroutines)
	}
	<-probesDone // its last probe is at the end
	stopRestarts()
	<-restartsDone // no more events
	prev := probeAt{probe: first, at: start}
	for i, st := range stats {
		acc := &accs[i]
		r := acc.row(i+1, o.sample, st)
		r.Due = dueIn(rep.Rate, time.Duration(i)*o.sample, time.Duration(i+1)*o.sample)
		if acc.n > 0 {
			r.CPUPercent = float64(acc.last.cpuTicks-prev.cpuTicks) / clockTicks / acc.last.at.Sub(prev.at).Seconds() * 100
			prev = acc.last
		}
		for _, e := range rep.Events {
			if e.AtS >= r.StartS && e.AtS < r.EndS {
				r.Events = append(r.Events, e.What)
			}
		}
		for c, v := range st.errors {
			rep.Errors[c] += v
		}
		rep.Rows = append(rep.Rows, r)
	}
	if failedProbes > 0 || missedProbes > 0 {
		warnf("%d probes of tether failed, %d were skipped as the one before was late (a busy machine? a slow admin API?)", failedProbes, missedProbes)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	rep.Verdict = judge(rep.Rows, o.windowRows())
	return rep, nil
}

// probeEach probes tether probesPerPeriod times a period for n periods
// from start, the last at the end, and hands each probe to add with its
// period (from 0) and the time it was due. A probe whose time passed while
// the one before ran is skipped (missed), not run late.
func probeEach(ctx context.Context, tp *tetherProc, start time.Time, sample time.Duration, n int, add func(k int, pr probe, at time.Time)) (failed, missed int) {
	every := sample / probesPerPeriod
	for j := 1; j <= n*probesPerPeriod; j++ {
		at := start.Add(time.Duration(j) * every)
		if time.Since(at) > every {
			missed++
			continue
		}
		if sleepUntil(ctx, at) != nil {
			return failed, missed
		}
		pr, err := tp.probe()
		if err != nil {
			failed++
			continue
		}
		add((j-1)/probesPerPeriod, pr, at)
	}
	return failed, missed
}

// restartMembers kills the members in turn, the first at start +
// restartEvery/2 and then every restartEvery, each started again after
// downTime, as long as it is back before end.
func restartMembers(ctx context.Context, o *options, start, end time.Time, members [2]*memberProc, note func(string), warnf func(string, ...any)) {
	for j := 0; ; j++ {
		at := start.Add(o.restartEvery/2 + time.Duration(j)*o.restartEvery)
		if at.Add(o.downTime()).After(end) || sleepUntil(ctx, at) != nil {
			return
		}
		m := members[j%2]
		m.kill()
		note("killed " + m.spec.Name)
		if sleepUntil(ctx, at.Add(o.downTime())) != nil {
			return
		}
		if err := m.start(); err != nil {
			warnf("%v", err)
			note(m.spec.Name + " did not start")
			continue
		}
		note(m.spec.Name + " back")
	}
}

// dueIn is how many requests the schedule makes due in [from, to): the
// i-th is due at dueAt(i, rate).
func dueIn(rate float64, from, to time.Duration) int64 {
	return int64(dueBefore(rate, to) - dueBefore(rate, from))
}

// dueBefore counts the requests due before t.
func dueBefore(rate float64, t time.Duration) int {
	n := int(math.Ceil(t.Seconds() * rate)) // about; float rounding below
	for n > 0 && dueAt(n-1, rate) >= t {
		n--
	}
	for dueAt(n, rate) < t {
		n++
	}
	return n
}

// probeAcc sums one period's probes.
type probeAcc struct {
	n                             int
	rss, fds, goroutines, mconns  float64
	rssMax, fdsMax, goroutinesMax int64
	last                          probeAt
}

// probeAt is a probe and the time it was due.
type probeAt struct {
	probe
	at time.Time
}

func (a *probeAcc) add(p probe, at time.Time) {
	a.n++
	a.rss += float64(p.rssKiB)
	a.fds += float64(p.fds)
	a.goroutines += float64(p.goroutines)
	a.mconns += float64(p.memberConns)
	a.rssMax = max(a.rssMax, p.rssKiB)
	a.fdsMax = max(a.fdsMax, int64(p.fds))
	a.goroutinesMax = max(a.goroutinesMax, int64(p.goroutines))
	a.last = probeAt{probe: p, at: at}
}

// row makes period k's row from its probes and its requests.
func (a *probeAcc) row(k int, sample time.Duration, st *periodStats) row {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	r := row{
		Period: k, StartS: (time.Duration(k-1) * sample).Seconds(), EndS: (time.Duration(k) * sample).Seconds(),
		Requests: st.requests, ByKind: st.byKind[:], Errors: st.errorCount(),
		P50Ms: ms(st.hist.ValueAtQuantile(50)), P99Ms: ms(st.hist.ValueAtQuantile(99)), MaxMs: ms(st.hist.Max()),
		Probes: a.n,
	}
	if len(st.errors) > 0 {
		r.ErrorCauses = st.errors
	}
	if a.n > 0 {
		n := float64(a.n)
		r.RSSMiB, r.RSSMaxMiB = a.rss/n/1024, float64(a.rssMax)/1024
		r.FDs, r.FDsMax = a.fds/n, int(a.fdsMax)
		r.Goroutines, r.GoroutinesMax = a.goroutines/n, int(a.goroutinesMax)
		r.MemberConns = a.mconns / n
	}
	return r
}

func newReport(o *options, bin string) *report {
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	rep := &report{
		Date: time.Now().Format(time.RFC3339), Host: host, Kernel: strings.TrimSpace(string(kernel)),
		CPUs: runtime.NumCPU(), Go: runtime.Version(), Tether: bin,
		Options: settings{
			Duration: o.duration.String(), RestartEvery: o.restartEvery.String(), DownTime: o.downTime().String(),
			Window: o.window.String(), Sample: o.sample.String(), Load: o.load,
		},
		Errors: errCounts{}, Warnings: []string{}, Events: []event{}, Rows: []row{},
	}
	for k, p := range mix {
		rep.Mix = append(rep.Mix, share{Kind: kindNames[k], Percent: p})
	}
	return rep
}

// sleepUntil waits until t or ctx's end.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitUntil polls cond every 100 ms for up to within.
func waitUntil(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) || sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) != nil {
			return cond()
		}
	}
	return true
}
