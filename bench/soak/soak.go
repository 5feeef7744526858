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
	bin, err := tetherBinary(ctx, o, tmp, logf)
	if err != nil {
		return nil, err
	}
	// warnf writes to r, not to the named result: a return with an error
	// sets that to nil before the deferred stops warn.
	r := newReport(o, bin)
	rep = r
	var warnMu sync.Mutex // the restarts warn from a goroutine of their own
	warnf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		warnMu.Lock()
		r.Warnings = append(r.Warnings, msg)
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
	if err := tp.waitMembersUp(ctx, 10*time.Second); err != nil {
		return nil, err
	}
	logf("tether %d on %s (http) and %s (tcp), admin %s; members %s and %s", tp.pid(), a.web, a.echo, a.admin, a.members[0].HTTP, a.members[1].HTTP)

	s := &soakRun{o: o, rep: rep, tp: tp, members: members, cl: &client{a: a}, logf: logf, warnf: warnf}
	if err := s.setRate(ctx); err != nil {
		return rep, err
	}
	logf("open loop at %.0f req/s for %s, a member killed every %s (down %s)", rep.Rate, o.duration, o.restartEvery, o.downTime())
	if err := s.runPeriods(ctx); err != nil {
		return rep, err
	}
	rep.Verdict = judge(rep.Rows, o.windowRows())
	return rep, nil
}

// tetherBinary is o.tether, or when that is empty a tether built from
// ./cmd/tether into dir.
func tetherBinary(ctx context.Context, o *options, dir string, logf func(string, ...any)) (string, error) {
	if o.tether != "" {
		return o.tether, nil
	}
	logf("building ./cmd/tether")
	return buildTether(ctx, dir)
}

// soakRun is what the steps of a soak share once the members and tether
// are up: the steps fill rep.
type soakRun struct {
	o       *options
	rep     *report
	tp      *tetherProc
	members [2]*memberProc
	cl      *client
	logf    func(string, ...any)
	warnf   func(string, ...any) // also adds to rep.Warnings
}

// setRate sets the open loop's rate: o.rate, or when that is 0, o.load
// times the peak measured first. An error means there is no rate to soak at.
func (s *soakRun) setRate(ctx context.Context) error {
	s.rep.Rate = s.o.rate
	if s.o.rate != 0 {
		return nil
	}
	s.logf("peak: %d workers, each with a keepalive conn, the mix back to back for %s", peakConns, s.o.peakTime)
	rps, failed := peak(ctx, s.cl, s.o.peakTime)
	s.rep.PeakRPS, s.rep.PeakErrors = math.Round(rps), failed
	s.rep.Rate = math.Round(rps * s.o.load)
	if failed > 0 {
		s.warnf("the peak measurement had %d failed requests", failed)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.rep.Rate < 10 {
		return fmt.Errorf("peak %.0f req/s: too low to soak at", rps)
	}
	return nil
}

// runPeriods runs the open loop at rep.Rate for o.rows() periods, with the
// members' restarts and tether's probes alongside, and fills rep's rows
// and errors. Everything it starts has stopped when it returns.
func (s *soakRun) runPeriods(ctx context.Context) error {
	// A pause after the peak: its short conns' TIME_WAITs and tether's
	// pools settle before the first row.
	if sleepUntil(ctx, time.Now().Add(min(2*time.Second, s.o.sample/2))) != nil {
		return ctx.Err()
	}
	n := s.o.rows()
	start := time.Now()
	end := start.Add(time.Duration(n) * s.o.sample)
	rec := newRecorder()
	stopLoad, loadDone := background(ctx, func(ctx context.Context) {
		openLoop(ctx, s.cl, rec, s.rep.Rate, start, end)
	})
	defer stopLoad()
	stopRestarts := s.startRestarts(ctx, start, end)
	defer stopRestarts()

	first, err := s.tp.probe()
	if err != nil {
		return fmt.Errorf("probe tether: %w", err)
	}
	probes := startSampler(ctx, s.tp, start, s.o.sample, n)
	defer probes.stop()

	stats, err := s.endPeriods(ctx, start, n, rec, loadDone, probes)
	if err != nil {
		return err
	}
	<-probes.done  // its last probe is at the end
	stopRestarts() // no more events
	s.fillRows(probeAt{probe: first, at: start}, stats, probes.accs)
	if probes.failed > 0 || probes.missed > 0 {
		s.warnf("%d probes of tether failed, %d were skipped as the one before was late (a busy machine? a slow admin API?)", probes.failed, probes.missed)
	}
	return ctx.Err()
}

// startRestarts runs restartMembers in the background, each kill and
// restart noted in rep.Events with its time from start; stop ends it and
// waits.
func (s *soakRun) startRestarts(ctx context.Context, start, end time.Time) (stop func()) {
	var mu sync.Mutex
	note := func(what string) {
		mu.Lock()
		s.rep.Events = append(s.rep.Events, event{AtS: time.Since(start).Seconds(), What: what})
		mu.Unlock()
		s.logf("%s", what)
	}
	stop, _ = background(ctx, func(ctx context.Context) {
		restartMembers(ctx, s.o, start, end, s.members, note, s.warnf)
	})
	return stop
}

// endPeriods ends each of the n periods from start on time: it takes the
// period's requests from rec (the last period waits for the load to end,
// loadDone), checks that tether still runs and logs the period. It returns
// the periods ended, fewer than n when ctx ended.
func (s *soakRun) endPeriods(ctx context.Context, start time.Time, n int, rec *recorder, loadDone <-chan struct{}, probes *sampler) ([]*periodStats, error) {
	stats := make([]*periodStats, 0, n)
	for k := 1; k <= n; k++ {
		if sleepUntil(ctx, start.Add(time.Duration(k)*s.o.sample)) != nil {
			break
		}
		st := rec.swap()
		if k == n {
			// The requests still in flight at the end count in the last row.
			<-loadDone
			st.merge(rec.swap())
		}
		stats = append(stats, st)
		if !s.tp.alive() {
			return stats, fmt.Errorf("tether exited: %s", s.tp.tail(10))
		}
		r := probes.row(k, s.o.sample, st)
		s.logf("period %d/%d: %d requests, %d errors, p99 %s ms, RSS %.1f MiB, %.0f fds, %.0f goroutines", k, n, r.Requests, r.Errors, fmtMs(r.P99Ms), r.RSSMiB, r.FDs, r.Goroutines)
	}
	return stats, nil
}

// fillRows adds a row to rep for each period's stats and accs, with the
// requests due in it, tether's CPU use since the last probe before (the
// first is prev) and the events in it, and adds its errors to rep's.
func (s *soakRun) fillRows(prev probeAt, stats []*periodStats, accs []probeAcc) {
	rep, sample := s.rep, s.o.sample
	for i, st := range stats {
		acc := &accs[i]
		r := acc.row(i+1, sample, st)
		r.Due = dueIn(rep.Rate, time.Duration(i)*sample, time.Duration(i+1)*sample)
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
}

// sampler probes tether on a schedule of its own, so that a slow probe (a
// busy machine, a slow admin API) never delays a period's end: each is
// counted in the period of the time it was due.
type sampler struct {
	stop func()          // ends the probes and waits for done
	done <-chan struct{} // closed when the probes have ended

	mu             sync.Mutex
	accs           []probeAcc // by period; read without mu once done is closed
	failed, missed int        // set when done is closed
}

// startSampler starts probing tether for n periods of sample from start
// (probeEach).
func startSampler(ctx context.Context, tp *tetherProc, start time.Time, sample time.Duration, n int) *sampler {
	s := &sampler{accs: make([]probeAcc, n)}
	s.stop, s.done = background(ctx, func(ctx context.Context) {
		s.failed, s.missed = probeEach(ctx, tp, start, sample, n, s.add)
	})
	return s
}

func (s *sampler) add(k int, pr probe, at time.Time) {
	s.mu.Lock()
	s.accs[k].add(pr, at)
	s.mu.Unlock()
}

// row makes period k's row from its probes so far and st.
func (s *sampler) row(k int, sample time.Duration, st *periodStats) row {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accs[k-1].row(k, sample, st)
}

// background runs f in a goroutine of its own, with a context of its own:
// done is closed when f has returned; stop cancels f's context and waits
// for done (and may be called again).
func background(ctx context.Context, f func(context.Context)) (stop func(), done <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	d := make(chan struct{})
	go func() {
		defer close(d)
		f(ctx)
	}()
	return func() { cancel(); <-d }, d
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
