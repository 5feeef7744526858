package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

// ErrNoMember means no member can take a new connection: none is up and
// enabled (or every one was tried already). Connect returns it at once.
var ErrNoMember = errors.New("pool: no member available")

// ErrMemberLimit means members are up but every one is at its
// max_connections. It wraps ErrNoMember, so errors.Is(err, ErrNoMember)
// holds for it too.
var ErrMemberLimit = fmt.Errorf("%w: every member at its connection limit", ErrNoMember)

// Pool is a named set of members with a balancer, a health monitor and
// preconnect stocks. Build it with New, then Start; Close stops it.
type Pool struct {
	cfg config.Pool
	log *zap.Logger
	// members are the members of the config in force, in its order
	// (SetMembers replaces the slice); every is every member the pool has
	// had, by index: a removed member stays there (draining) and comes
	// back as itself if a later config names it again. Both copy-on-write.
	members atomic.Pointer[[]*Member]
	every   atomic.Pointer[[]*Member]
	bal     balancer
	probe   *net.Dialer // health checks: the root profile, fastopen off
	// tlsFor and tlsTimeout are SetTLS's: a member's client config, and
	// the bound of a TLS handshake with a member.
	tlsFor     func(addr string) *tls.Config
	tlsTimeout time.Duration

	ctx    context.Context // cancelled by Close; bounds every background dial
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the pool starts

	// conns are the live ConnPools (every Dialer's stock, every reuse
	// ConnPool), copy-on-write under connsMu: told when a member's slot
	// frees or its eligibility changes.
	conns   atomic.Pointer[[]*ConnPool]
	connsMu sync.Mutex

	mu      sync.Mutex
	dialers map[string]*Dialer // by server profile name
	// onDrainEnd ends the relays to a member whose drain is over (OnDrainEnd).
	onDrainEnd func(*Member)
	order      []*Dialer // dialers in creation order
	started    bool
	closed     bool
}

// New builds a pool from a validated config. logger may be nil (no logs).
// Nothing runs until Start.
func New(cfg config.Pool, logger *zap.Logger) (*Pool, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if len(cfg.Members) == 0 {
		return nil, fmt.Errorf("pool %q: no members", cfg.Name)
	}
	bal, err := newBalancer(cfg.Method, len(cfg.Members))
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		cfg:     cfg,
		log:     logger.With(zap.String("pool", cfg.Name)),
		bal:     bal,
		ctx:     ctx,
		cancel:  cancel,
		dialers: make(map[string]*Dialer),
	}
	if cfg.Health.Type != config.HealthNone {
		p.probe = sockopt.Dialer(config.DefaultProfile(), cfg.Health.Timeout)
	}
	ms := make([]*Member, len(cfg.Members))
	for i, cm := range cfg.Members {
		ms[i] = newMember(p, i, cm)
	}
	p.members.Store(&ms)
	p.every.Store(&ms)
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Members returns the members of the config in force, in its order. The
// slice is shared: do not modify it.
func (p *Pool) Members() []*Member { return *p.members.Load() }

// all returns every member the pool has had, by index (removed ones
// included: they drain).
func (p *Pool) all() []*Member { return *p.every.Load() }

// Stats returns a snapshot of every member's counters, in config order.
func (p *Pool) Stats() []MemberStats {
	ms := p.Members()
	s := make([]MemberStats, len(ms))
	for i, m := range ms {
		s[i] = m.Stats()
	}
	return s
}

// Start starts one health monitor per member (health type tcp or http) and the
// preconnect filler of every Dialer handed out so far; Dialers handed out
// later start theirs at once. Start returns at once; calling it again, or
// after Close, does nothing.
func (p *Pool) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	for _, m := range p.Members() {
		p.startMonitorLocked(m)
	}
	for _, d := range p.order {
		d.startLocked()
	}
}

// Close stops every goroutine of the pool, waits for them, then closes the
// preconnected idle conns with RST (no TIME_WAIT on tether's ports). Conns
// handed out by Connect are the caller's and stay open. Connect keeps
// working after Close with fresh dials only (no preconnect, no active
// health). Close is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	dialers := p.order
	p.mu.Unlock()

	p.cancel()
	p.wg.Wait()
	for _, d := range dialers {
		d.stock.Close()
	}
}

// Dialer returns the handle through which virtual servers using the server
// profile reach the pool's members. Virtual servers with the same profile
// name share one handle and so one preconnect stock.
//
// After a reload changed the profile under the same name, the next call
// returns a new handle with the new profile; the old handle's conns in use
// stay theirs and its preconnect stock is closed.
func (p *Pool) Dialer(profile config.TCPProfile) *Dialer {
	p.mu.Lock()
	old, ok := p.dialers[profile.Name]
	if ok && reflect.DeepEqual(old.profile, profile) {
		p.mu.Unlock()
		return old
	}
	d := newDialer(p, profile)
	p.dialers[profile.Name] = d
	if ok {
		p.order = slices.DeleteFunc(p.order, func(x *Dialer) bool { return x == old })
	}
	p.order = append(p.order, d)
	if p.started && !p.closed {
		d.startLocked()
	}
	p.mu.Unlock()
	if ok {
		old.stock.Close()
	}
	return d
}

// memberChanged runs after a member became eligible or not (health or
// admin). Every ConnPool hears of it: one that came up is filled without
// backoff and may serve queued Gets, one that went away loses its idle
// conns at once. An admin change is logged here; health logs its own.
func (p *Pool) memberChanged(m *Member, eligible bool, reason string) {
	if cs := p.conns.Load(); cs != nil {
		for _, c := range *cs {
			if eligible {
				c.memberUp(m)
			} else {
				c.memberLeft(m)
			}
		}
	}
	if reason == "admin" {
		p.log.Info("member state changed",
			zap.String("member", m.addr),
			zap.Stringer("state", m.State()),
			zap.String("reason", "set by admin"))
	}
}

// slotFreed tells every live ConnPool that m may take a conn again, so a
// filler held back by max_connections or a Get queued at the limit looks
// again.
func (p *Pool) slotFreed(m *Member) {
	if cs := p.conns.Load(); cs != nil {
		for _, c := range *cs {
			c.slotFreed(m)
		}
	}
}

// idleTimeoutShrank makes every reuse ConnPool's reaper sweep now: m's
// learnt idle timeout became shorter, and idle conns may be past it.
func (p *Pool) idleTimeoutShrank(m *Member) {
	if cs := p.conns.Load(); cs != nil {
		for _, c := range *cs {
			if !c.stock {
				c.wakeReaper()
			}
		}
	}
}

// addConnPool and removeConnPool keep p.conns (copy-on-write).
func (p *Pool) addConnPool(c *ConnPool) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	var cs []*ConnPool
	if old := p.conns.Load(); old != nil {
		cs = slices.Clone(*old)
	}
	c.grow(len(p.all())) // SetMembers may have grown the index space since c was built
	cs = append(cs, c)
	p.conns.Store(&cs)
}

func (p *Pool) removeConnPool(c *ConnPool) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	old := p.conns.Load()
	if old == nil {
		return
	}
	cs := slices.DeleteFunc(slices.Clone(*old), func(x *ConnPool) bool { return x == c })
	if len(cs) == 0 {
		p.conns.Store(nil)
		return
	}
	p.conns.Store(&cs)
}
