package pool

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

// monitor is the active health check of one member: a TCP connect (type
// http: and a request whose status line must be in the expected range) every
// Interval, bounded by Timeout, closed with RST so probes leave no TIME_WAIT
// on either side. The first check runs at once. It stops when the pool
// closes or stop is closed (the member was removed).
func (p *Pool) monitor(m *Member, stop <-chan struct{}) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.Health.Interval)
	defer t.Stop()
	short := false // the last check could not run for tether's own shortage
	for {
		err := p.check(m)
		if p.ctx.Err() != nil {
			return // the check was cut by Close: not the member's fault
		}
		var se shortageError
		switch {
		case errors.As(err, &se):
			// The member was never asked: its health stays as it was.
			if !short {
				p.log.Warn("health check could not run", zap.String("member", m.addr), zap.Error(err))
			}
			short = true
		default:
			short = false
			m.checks.Add(1)
			if err != nil {
				m.checkFailures.Add(1)
			}
			p.observe(m, err, "health check")
		}
		select {
		case <-p.ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// check dials m once with the probe dialer (type http: and asks for the
// health path) and closes the conn with RST.
func (p *Pool) check(m *Member) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Health.Timeout)
	defer cancel()
	c, err := p.probe.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return shortage(err, m.addr)
	}
	tc := c.(*net.TCPConn)
	defer sockopt.Close(tc, config.CloseReset, 0) // RST: no TIME_WAIT; the conn is gone either way
	if p.cfg.Health.Type != config.HealthHTTP {
		return nil
	}
	deadline, _ := ctx.Deadline()
	_ = tc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Unix(1, 0)) }) // Close cuts a check short
	defer stop()
	if m.tls != nil {
		// The check speaks what the members speak; a handshake that
		// fails (an expired or unverifiable certificate) fails it.
		sc := tls.Client(tc, m.tls)
		if err := sc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("http check: TLS handshake: %w", err)
		}
		return httpCheck(sc, p.cfg.Health, m.addr)
	}
	return httpCheck(tc, p.cfg.Health, m.addr)
}

// httpCheck sends one request and reads the status line of the answer;
// the rest of the response is not read (the conn is reset after).
func httpCheck(c io.ReadWriter, h config.Health, memberAddr string) error {
	host := h.Host
	if host == "" {
		host = memberAddr
	}
	req := h.Method + " " + h.Path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: tether-health\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("http check: send: %w", err)
	}
	// "HTTP/1.1 200 OK": the status line is short; 512 bytes bound the read.
	var buf [512]byte
	n := 0
	for {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return checkStatusLine(buf[:i], h)
		}
		if n == len(buf) {
			return errors.New("http check: status line longer than 512 bytes")
		}
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
				return checkStatusLine(buf[:i], h)
			}
			return fmt.Errorf("http check: no status line: %w", err)
		}
	}
}

// checkStatusLine wants "HTTP/1.x NNN ..." with NNN in the expected range.
func checkStatusLine(line []byte, h config.Health) error {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("http check: malformed status line %q", truncate(line, 64))
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("http check: malformed status line %q", truncate(line, 64))
		}
		code = code*10 + int(c-'0')
	}
	if code < h.StatusMin || code > h.StatusMax {
		return fmt.Errorf("http check: status %d, want %s", code, h.ExpectStatus)
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// observe feeds one result (nil = success) into m's rise/fall streaks and
// flips its health after Rise consecutive successes or Fall consecutive
// failures. Only an active monitor (tcp or http) ever marks a member down; with none,
// results are ignored. source says where the result came from ("health
// check", "connect", "preconnect") for the transition log.
func (p *Pool) observe(m *Member, result error, source string) {
	if p.cfg.Health.Type == config.HealthNone {
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
	// The idle conns a dying member closed are no idle timeout: health
	// voids them, from as far back as it may have taken to notice.
	if now := time.Now(); result == nil {
		m.learn.revived(now)
	} else {
		h := p.cfg.Health
		m.learn.died(now.Add(-(time.Duration(h.Fall)*h.Interval + h.Timeout)))
	}
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
