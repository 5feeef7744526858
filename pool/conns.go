package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherproxy/tether/config"
)

// ErrQueueTimeout is returned by Get when every member stayed at its
// max_connections for the whole QueueTimeout. It wraps ErrMemberLimit and so
// ErrNoMember: the proxy answers 503 for all three.
var ErrQueueTimeout = fmt.Errorf("%w: none freed within the queue timeout", ErrMemberLimit)

// ErrConnPoolClosed is returned by Get once a reuse ConnPool is closed, and to
// Gets that were queued when it closed.
var ErrConnPoolClosed = errors.New("pool: connection pool closed")

// ConnPool keeps established conns to the members of a Pool for one server
// profile and lends them. Per member it holds one record (memberConns): an
// idle stack (most recently used on top), the filler's state and the
// counters. Around them: a FIFO of Gets waiting for a member at its
// max_connections, each delivered exactly once (wantQueue); one filler that
// keeps a floor of idle conns, with backoff, never beyond max_connections;
// one reaper that closes idle conns at their deadline (idle timeout, learnt
// Keep-Alive) and peeks at all of them every peek_interval; one stale check
// before a conn is lent.
//
// It has two uses, which differ only in their settings:
//
//   - tcp preconnect: every Dialer has one (Dialer.Connect lends from it).
//     The filler keeps config.Pool.Preconnect conns spread over the members
//     that are up; each conn is handed out once and never comes back.
//   - http reuse (NewReusePool): the relay lends a conn per exchange and gives
//     it back with Put; the filler keeps min_idle per member; conns retire
//     so the member closes first.
//
// Its methods are safe for concurrent use.
type ConnPool struct {
	pool   *Pool
	dialer *Dialer
	// cfg is in force: for reuse the virtual server's settings (MaxIdle 0
	// under reuse = never, MinIdle at most MaxIdle); for a stock only
	// MaxIdle (= preconnect) and PeekInterval are set.
	cfg config.Reuse
	// stock: the tcp preconnect use. Its conns are used once, its idle
	// conns are spread over members by share and trimmed to it, dropped
	// with RST, and it goes on dialing for Connect after it is closed.
	stock bool
	// fills: the filler has a floor to keep (preconnect or min_idle > 0).
	fills bool
	// members holds one record per member, by member index, copy-on-write:
	// Pool.SetMembers grows it (under mu) before a new member is published,
	// so a member's index is always in range. Read it through mc.
	members atomic.Pointer[[]*memberConns]

	nwait   atomic.Int64 // live queued Gets (mirror of the queue, for slotFreed)
	closing atomic.Bool  // Close started

	mu       sync.Mutex
	q        wantQueue
	cands    []*Member                // pick scratch (mu held)
	peekBuf  []*ServerConn            // reaper scratch (reaper goroutine only)
	retiring map[*ServerConn]struct{} // waiting for the member's FIN
	reapAt   time.Time                // when the reaper wakes next
	closed   bool

	wake     chan struct{} // cap 1: the reaper should sweep now
	fillWake chan struct{} // cap 1: the reaper should run the filler
	stop     chan struct{} // closed by Close
	ctx      context.Context
	cancel   context.CancelFunc // cuts the filler's dials short (Close)
	wg       sync.WaitGroup     // the reaper, filler dials, retired conns
}

// memberConns is one member's share of a ConnPool. Everything but blocked
// and the counters is guarded by ConnPool.mu.
type memberConns struct {
	idle []*ServerConn // most recently used last (handed out first)
	// target is the idle conns the filler keeps: min_idle, or the member's
	// share of preconnect; 0 while the member is down or disabled.
	target   int
	dialing  int       // filler dials in flight
	failures int       // consecutive failed filler dials
	retryAt  time.Time // no filler dial before this (backoff)
	// blocked: short of target and waiting for a slot, for the member to
	// come up, or for its backoff to end; slotFreed then wakes the filler.
	// Written by the filler, read lock-free by slotFreed.
	blocked  atomic.Bool
	counters connCounters
}

// connCounters are one member's counters in one ConnPool (ReuseStats).
type connCounters struct {
	opened, reused, retired, retiredByMember, expiredIdle, staleOnPeek,
	closedEarly, keepAliveLearnt, discarded, overflow, warmed, warmFailed,
	niDials, niEvicted counter
	replays [replayCauses]counter
}

// NewReusePool builds the http-reuse ConnPool of a virtual server on d with
// the pool's validated reuse settings (config.Pool.Reuse), and starts its
// reaper, which also fills the min_idle warm pool at once. Under reuse =
// never no conn is kept idle (and so none is warmed). Close it before the
// Pool.
func NewReusePool(d *Dialer, cfg config.Reuse) *ConnPool {
	if cfg.Mode == config.ReuseNever {
		cfg.MaxIdle = 0
	}
	cfg.MinIdle = min(cfg.MinIdle, cfg.MaxIdle)
	p := newConnPool(d, cfg, false)
	p.start()
	return p
}

// newStock builds the tcp preconnect ConnPool of d; Pool.Start starts its
// filler when preconnect is on.
func newStock(d *Dialer) *ConnPool {
	cfg := config.Reuse{MaxIdle: d.pool.cfg.Preconnect, PeekInterval: d.pool.cfg.PeekInterval}
	return newConnPool(d, cfg, true)
}

func newConnPool(d *Dialer, cfg config.Reuse, stock bool) *ConnPool {
	n := len(d.pool.all())
	p := &ConnPool{
		pool:     d.pool,
		dialer:   d,
		cfg:      cfg,
		stock:    stock,
		fills:    (stock && cfg.MaxIdle > 0) || (!stock && cfg.MinIdle > 0),
		cands:    make([]*Member, 0, n),
		retiring: make(map[*ServerConn]struct{}),
		wake:     make(chan struct{}, 1),
		fillWake: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	p.growLocked(n)
	p.ctx, p.cancel = context.WithCancel(d.pool.ctx)
	d.pool.addConnPool(p)
	return p
}

// mc returns member index i's record.
func (p *ConnPool) mc(i int) *memberConns { return (*p.members.Load())[i] }

// growLocked makes room for members up to index n-1. p.mu is held (or p
// is not shared yet).
func (p *ConnPool) growLocked(n int) {
	var ms []*memberConns
	if old := p.members.Load(); old != nil {
		if len(*old) >= n {
			return
		}
		ms = slices.Clone(*old)
	}
	for len(ms) < n {
		ms = append(ms, &memberConns{})
	}
	p.members.Store(&ms)
}

// grow is growLocked for Pool.SetMembers.
func (p *ConnPool) grow(n int) {
	p.mu.Lock()
	p.growLocked(n)
	p.mu.Unlock()
}

// start runs the reaper (and with it the filler).
func (p *ConnPool) start() {
	p.wg.Add(1)
	go p.maintain()
}

// Settings returns the reuse settings in force: MaxIdle 0 under reuse =
// never, MinIdle at most MaxIdle.
func (p *ConnPool) Settings() config.Reuse { return p.cfg }

// Idle returns how many idle conns the ConnPool holds for m.
func (p *ConnPool) Idle(m *Member) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mc(m.index).idle)
}

// Close stops the ConnPool: queued Gets return ErrConnPoolClosed, retired
// conns still waiting for their member's FIN are reset, the reaper stops
// (Close waits for it and every goroutine the ConnPool started, filler
// dials in flight cut short), and the idle conns are closed with RST (no
// TIME_WAIT on tether's ports). Conns lent out stay the caller's; their Put
// closes them with RST. A reuse ConnPool lends nothing more; a Dialer's
// stock goes on dialing for Connect. Close is idempotent.
func (p *ConnPool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.closing.Store(true)
	p.cancel() // the filler's dials in flight
	var idle []*ServerConn
	for i, m := range p.pool.all() {
		mc := p.mc(i)
		idle = append(idle, mc.idle...)
		m.idle.Add(-int64(len(mc.idle)))
		clear(mc.idle)
		mc.idle = nil
	}
	for w := p.q.popFront(); w != nil; w = p.q.popFront() {
		p.deliverLocked(w, nil, ErrConnPoolClosed)
	}
	now := time.Now()
	for c := range p.retiring {
		_ = c.TCP.SetReadDeadline(now) // cut the wait for the FIN short
	}
	p.mu.Unlock()

	close(p.stop)
	p.wg.Wait()
	p.pool.removeConnPool(p)
	for _, c := range idle {
		p.closeConn(c, config.CloseReset)
	}
}

// slotFreed runs (from Member.release) when m may take a conn again: the
// filler looks again when it waits for m, and so does the oldest queued Get.
func (p *ConnPool) slotFreed(m *Member) {
	if p.fills && p.mc(m.index).blocked.Load() {
		p.kickFill()
	}
	if p.nwait.Load() == 0 {
		return
	}
	p.mu.Lock()
	p.kickFrontLocked()
	p.mu.Unlock()
}

// memberUp runs when m became eligible (health or admin): the filler starts
// over without backoff, and a queued Get may now pick m.
func (p *ConnPool) memberUp(m *Member) {
	p.mu.Lock()
	mc := p.mc(m.index)
	mc.failures, mc.retryAt = 0, time.Time{}
	p.mu.Unlock()
	if p.fills {
		p.kickFill()
	}
	p.slotFreed(m)
}

// memberLeft makes the reaper sweep now: m went down or was disabled, so
// its idle conns are closed at once rather than at the next peek.
func (p *ConnPool) memberLeft(*Member) { p.wakeReaper() }

// wakeReaper makes the reaper sweep now, without blocking.
func (p *ConnPool) wakeReaper() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// kickFill wakes the reaper to run the filler, without blocking.
func (p *ConnPool) kickFill() {
	select {
	case p.fillWake <- struct{}{}:
	default:
	}
}

// ReuseStats is a snapshot of a ConnPool's counters for one member.
type ReuseStats struct {
	Address string
	Idle    int // idle conns now

	// IdleTimeout is the idle limit in force for the member's conns (the
	// shortest of idle_timeout, the last Keep-Alive timeout it announced
	// less the margin, and the one learnt from its closes less the
	// margin; -1: none) and IdleSource which one it is.
	// IdleTimeoutLearnt is the member's learnt idle timeout itself (0:
	// none), IdleCloses the idle conns it was seen closing (the learner's
	// samples, from every ConnPool of the member).
	IdleTimeout       time.Duration
	IdleSource        IdleSource
	IdleTimeoutLearnt time.Duration
	IdleCloses        uint64

	Opened               uint64 // conns dialed (by Get and by the filler)
	Reused               uint64 // Gets served by an idle or handed-over conn
	Retired              uint64 // conns closed because Retire/ExpectMemberClose said so
	RetiredByMemberClose uint64 // of those, closed by the member first (TIME_WAIT on the member)
	ExpiredIdle          uint64 // idle conns closed by tether: idle timeout, announced or learnt cap, member disabled/down, evicted for a non-idempotent request
	StaleOnPeek          uint64 // idle conns found closed/reset/with stray data by a peek (Get or reaper)
	ClosedEarly          uint64 // conns the member closed before the Keep-Alive timeout it announced, or Discard(DiscardClosedEarly)
	KeepAliveLearnt      uint64 // LearnKeepAlive calls
	Discarded            uint64 // Discard calls
	IdleOverflow         uint64 // idle conns closed because MaxIdle was reached
	Warmed               uint64 // of Opened, conns dialed by the filler (min_idle, preconnect)
	WarmFailed           uint64 // filler dials that failed (each one backs the member off)

	// NonIdempotentDials: fresh conns dialed for non-idempotent requests
	// because the youngest idle conn was older than
	// non_idempotent_safe_idle; NonIdempotentEvicted: of those, the ones
	// that took the slot of that old conn (closed by tether; counted in
	// ExpiredIdle too) at the member's max_connections.
	NonIdempotentDials   uint64
	NonIdempotentEvicted uint64

	ReplaysHeadUnsent uint64 // requests replayed elsewhere: the head never fully reached this member
	ReplaysNoResponse uint64 // idempotent requests replayed elsewhere: no response byte from this member
}

// Stats returns the ConnPool's counters per member of the config in force,
// in its order.
func (p *ConnPool) Stats() []ReuseStats {
	ms := p.pool.Members()
	out := make([]ReuseStats, len(ms))
	p.mu.Lock()
	for i, m := range ms {
		out[i].Address = m.addr
		out[i].Idle = len(p.mc(m.index).idle)
	}
	p.mu.Unlock()
	now := time.Now()
	for i, m := range ms {
		c := &p.mc(m.index).counters
		s := &out[i]
		s.IdleTimeout, s.IdleSource = p.memberIdleLimit(m, now)
		s.IdleTimeoutLearnt = m.learn.Timeout(now)
		s.IdleCloses = m.learn.samples.Load()
		s.Opened = c.opened.Load()
		s.Reused = c.reused.Load()
		s.Retired = c.retired.Load()
		s.RetiredByMemberClose = c.retiredByMember.Load()
		s.ExpiredIdle = c.expiredIdle.Load()
		s.StaleOnPeek = c.staleOnPeek.Load()
		s.ClosedEarly = c.closedEarly.Load()
		s.KeepAliveLearnt = c.keepAliveLearnt.Load()
		s.Discarded = c.discarded.Load()
		s.IdleOverflow = c.overflow.Load()
		s.Warmed = c.warmed.Load()
		s.WarmFailed = c.warmFailed.Load()
		s.NonIdempotentDials = c.niDials.Load()
		s.NonIdempotentEvicted = c.niEvicted.Load()
		s.ReplaysHeadUnsent = c.replays[ReplayHeadUnsent].Load()
		s.ReplaysNoResponse = c.replays[ReplayNoResponse].Load()
	}
	return out
}

// memberIdleLimit is the idle limit in force for m's conns at now and its
// source, as a conn that carried the member's last announced Keep-Alive
// timeout would have it.
func (p *ConnPool) memberIdleLimit(m *Member, now time.Time) (time.Duration, IdleSource) {
	c := ServerConn{Member: m, idleLimit: -1}
	if p.cfg.IdleTimeout > 0 {
		c.idleLimit = p.cfg.IdleTimeout
	}
	if ka := time.Duration(m.learn.announced.Load()); ka > 0 {
		if l := max0(min(ka-p.cfg.KeepaliveMargin, ka/10*9)); c.idleLimit < 0 || l < c.idleLimit {
			c.idleLimit, c.idleSrc = l, IdleAnnounced
		}
	}
	return p.idleLimit(&c, now)
}

// ReplayCause says why a request was replayed on another conn.
type ReplayCause uint8

// Replay causes (the stale peek and a failed connect need no replay: Get
// moves on before a request is sent).
const (
	// ReplayHeadUnsent: writing the request head to a reused conn failed
	// before the member had the whole head; any method is replayed.
	ReplayHeadUnsent ReplayCause = iota
	// ReplayNoResponse: a reused conn ended before any response byte; only
	// idempotent requests without a body are replayed.
	ReplayNoResponse
	replayCauses
)

// String names the cause for access logs.
func (c ReplayCause) String() string {
	if c == ReplayHeadUnsent {
		return "head-unsent"
	}
	return "no-response"
}

// NoteReplay counts a replay of a request first sent to m.
func (p *ConnPool) NoteReplay(m *Member, cause ReplayCause) {
	if cause < replayCauses {
		p.mc(m.index).counters.replays[cause].Add(1)
	}
}
