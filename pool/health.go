package pool

import (
	"context"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

// monitor is the active health check of one member: a TCP connect every
// Interval, bounded by Timeout, closed with RST so probes leave no TIME_WAIT
// on either side. The first check runs at once. It stops when the pool
// closes.
func (p *Pool) monitor(m *Member) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.Health.Interval)
	defer t.Stop()
	for {
		err := p.check(m)
		if p.ctx.Err() != nil {
			return // the check was cut by Close: not the member's fault
		}
		m.checks.Add(1)
		if err != nil {
			m.checkFailures.Add(1)
		}
		p.observe(m, err, "health check")
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check dials m once with the probe dialer and closes the conn with RST.
func (p *Pool) check(m *Member) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Health.Timeout)
	defer cancel()
	c, err := p.probe.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return err
	}
	_ = sockopt.Close(c.(*net.TCPConn), config.CloseReset, 0) // RST: no TIME_WAIT; the conn is gone either way
	return nil
}

// observe feeds one result (nil = success) into m's rise/fall streaks and
// flips its health after Rise consecutive successes or Fall consecutive
// failures. Only the health type tcp ever marks a member down; with none,
// results are ignored. source says where the result came from ("health
// check", "connect", "preconnect") for the transition log.
func (p *Pool) observe(m *Member, result error, source string) {
	if p.cfg.Health.Type != config.HealthTCP {
		return
	}
	m.hmu.Lock()
	changed := false
	var streak int
	if result == nil {
		m.badStreak = 0
		m.okStreak++
		streak = m.okStreak
		if !m.healthy.Load() && m.okStreak >= p.cfg.Health.Rise {
			m.healthy.Store(true)
			changed = true
		}
	} else {
		m.okStreak = 0
		m.badStreak++
		streak = m.badStreak
		if m.healthy.Load() && m.badStreak >= p.cfg.Health.Fall {
			m.healthy.Store(false)
			changed = true
		}
	}
	m.hmu.Unlock()
	if !changed {
		return
	}
	m.healthTransitions.Add(1)
	if result == nil {
		p.log.Info("member up",
			zap.String("member", m.addr),
			zap.Int("successes", streak),
			zap.String("source", source),
			zap.Bool("enabled", m.enabled.Load()))
	} else {
		p.log.Warn("member down",
			zap.String("member", m.addr),
			zap.Int("failures", streak),
			zap.String("source", source),
			zap.Bool("enabled", m.enabled.Load()),
			zap.Error(result))
	}
	p.memberChanged(m, result == nil, source)
}
