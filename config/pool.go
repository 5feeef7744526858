package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// buildPool builds and validates [pool.NAME]: the pool's own keys, then its
// reuse keys, members, health check and TLS, in that order (the order its
// problems are reported in within a line).
func buildPool(name string, rp rawPool, dir string, v *validator) Pool {
	path := fmt.Sprintf("pool %q", name)
	v.at(path, "pool", name)
	v.under(path+": health", path, "health")
	v.under(path+": tls", path, "tls")
	p := Pool{
		Name:           name,
		Method:         strOr(rp.Method, DefaultMethod),
		ConnectTimeout: durOr(rp.ConnectTimeout, DefaultConnectTimeout),
		ConnectRetries: intOr(rp.ConnectRetries, DefaultConnectRetries),
		DrainTimeout:   durOr(rp.DrainTimeout, DefaultDrainTimeout),
		Preconnect:     intOr(rp.Preconnect, 0),
	}
	v.oneOf(path+": method", p.Method, Methods...)
	if p.ConnectTimeout <= 0 {
		v.add(path, "connect_timeout", "must be > 0")
	}
	if p.ConnectRetries < 0 {
		v.add(path, "connect_retries", "must be >= 0")
	}
	if p.DrainTimeout <= 0 {
		v.add(path, "member_drain_timeout", "must be > 0")
	}
	if p.Preconnect < 0 {
		v.add(path, "preconnect", "must be >= 0 (0 = off)")
	}
	if len(rp.Members) == 0 {
		v.add(path, "members", "at least one member is required")
	}
	p.Reuse = buildReuse(path, rp, v)
	p.Members = buildMembers(path, rp.Members, v)
	p.Health = buildHealth(path+": health", rp.Health, v)
	if rp.TLS != nil {
		p.TLS = buildPoolTLS(v, path+": tls", dir, *rp.TLS)
	}
	return p
}

// buildReuse builds and validates the http-mode reuse keys of a pool.
func buildReuse(path string, rp rawPool, v *validator) Reuse {
	dr := DefaultReuse()
	r := Reuse{
		Mode:            strOr(rp.Reuse, dr.Mode),
		MaxIdle:         intOr(rp.MaxIdle, dr.MaxIdle),
		IdleTimeout:     durOr(rp.IdleTimeout, dr.IdleTimeout),
		MaxAge:          durOr(rp.MaxAge, dr.MaxAge),
		AgeJitter:       floatOr(rp.AgeJitter, dr.AgeJitter),
		MinIdle:         intOr(rp.MinIdle, dr.MinIdle),
		MaxRequests:     intOr(rp.MaxRequests, dr.MaxRequests),
		QueueTimeout:    durOr(rp.QueueTimeout, dr.QueueTimeout),
		KeepaliveMargin: durOr(rp.KeepaliveMargin, dr.KeepaliveMargin),
		PeekInterval:    durOr(rp.PeekInterval, dr.PeekInterval),
		RetireWait:      durOr(rp.RetireWait, dr.RetireWait),

		NonIdempotentSafeIdle: durOr(rp.NISafeIdle, dr.NonIdempotentSafeIdle),
		NonIdempotentFallback: strOr(rp.NIFallback, dr.NonIdempotentFallback),
	}
	v.oneOf(path+": reuse", r.Mode, ReuseShared, ReusePerClient, ReuseNever)
	if r.MaxIdle < 0 {
		v.add(path, "max_idle", "must be >= 0 (0 = keep no idle member conn)")
	}
	if r.MaxRequests < 0 {
		v.add(path, "max_requests", "must be >= 0 (0 = no limit)")
	}
	if r.MinIdle < 0 || r.MinIdle > r.MaxIdle {
		v.add(path, "min_idle", fmt.Sprintf("must be between 0 and max_idle (%d)", r.MaxIdle))
	}
	if r.AgeJitter < 0 || r.AgeJitter >= 1 {
		v.add(path, "age_jitter", "must be in [0, 1): the largest share of max_age taken off at random")
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"idle_timeout", r.IdleTimeout}, {"max_age", r.MaxAge}, {"queue_timeout", r.QueueTimeout}, {"keepalive_margin", r.KeepaliveMargin},
		{"non_idempotent_safe_idle", r.NonIdempotentSafeIdle}} {
		if d.d < 0 {
			v.add(path, d.key, "must be >= 0")
		}
	}
	if r.PeekInterval <= 0 {
		v.add(path, "peek_interval", "must be > 0")
	}
	if r.RetireWait <= 0 {
		v.add(path, "retire_wait", "must be > 0")
	}
	v.oneOf(path+": non_idempotent_fallback", r.NonIdempotentFallback, FallbackDial, FallbackReuse)
	return r
}

// buildMembers builds and validates a pool's members list.
func buildMembers(path string, rms []rawMember, v *validator) []Member {
	var ms []Member
	seen := map[string]int{}
	for i, rm := range rms {
		m := Member{
			Address:        strOr(rm.Address, ""),
			Weight:         intOr(rm.Weight, DefaultWeight),
			MaxConnections: intOr(rm.MaxConnections, 0),
			State:          strOr(rm.State, StateEnabled),
		}
		mpath := fmt.Sprintf("%s: member %d", path, i+1)
		v.under(mpath, path, "members", strconv.Itoa(i))
		if m.Address == "" {
			v.add(mpath, "address", "is required")
		} else if err := checkHostPort(m.Address, false); err != nil {
			v.add(mpath, fmt.Sprintf("address %q", m.Address), err.Error())
		} else if j, dup := seen[m.Address]; dup {
			v.add(mpath, fmt.Sprintf("address %q", m.Address), fmt.Sprintf("is also member %d", j))
		} else {
			seen[m.Address] = i + 1
		}
		if m.Weight < 1 {
			v.add(mpath, "weight", "must be >= 1")
		}
		if m.MaxConnections < 0 {
			v.add(mpath, "max_connections", "must be >= 0 (0 = no limit)")
		}
		v.oneOf(mpath+": state", m.State, StateEnabled, StateDisabled)
		ms = append(ms, m)
	}
	return ms
}

// buildHealth builds and validates [pool.NAME.health] (hpath names it).
// The http-only keys are cleared unless type is http.
func buildHealth(hpath string, rh rawHealth, v *validator) Health {
	dh := DefaultHealth()
	h := Health{
		Type:     strOr(rh.Type, dh.Type),
		Interval: durOr(rh.Interval, dh.Interval),
		Timeout:  durOr(rh.Timeout, dh.Timeout),
		Rise:     intOr(rh.Rise, dh.Rise),
		Fall:     intOr(rh.Fall, dh.Fall),
		Method:   strOr(rh.Method, DefaultHealthMethod),
		Path:     strOr(rh.Path, DefaultHealthPath),
		Host:     strOr(rh.Host, ""),

		ExpectStatus: strOr(rh.ExpectStatus, DefaultHealthExpectation),
	}
	v.oneOf(hpath+": type", h.Type, HealthTCP, HealthHTTP, HealthNone)
	if h.Type != HealthHTTP && (rh.Method != nil || rh.Path != nil || rh.Host != nil || rh.ExpectStatus != nil) {
		v.add(hpath, "type", fmt.Sprintf("method, path, host and expect_status need type = %q", HealthHTTP))
	}
	if !isToken(h.Method) {
		v.add(hpath, fmt.Sprintf("method %q", h.Method), "is not an HTTP method token")
	}
	if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n") {
		v.add(hpath, fmt.Sprintf("path %q", h.Path), "must start with / and contain no whitespace")
	}
	if strings.ContainsAny(h.Host, " \t\r\n") {
		v.add(hpath, fmt.Sprintf("host %q", h.Host), "must contain no whitespace")
	}
	if lo, hi, err := parseStatusRange(h.ExpectStatus); err != nil {
		v.add(hpath, fmt.Sprintf("expect_status %q", h.ExpectStatus), err.Error())
	} else {
		h.StatusMin, h.StatusMax = lo, hi
	}
	if h.Type != HealthHTTP {
		h.Method, h.Path, h.Host, h.ExpectStatus = "", "", "", ""
		h.StatusMin, h.StatusMax = 0, 0
	}
	if h.Type == HealthNone {
		return h
	}
	if h.Interval <= 0 {
		v.add(hpath, "interval", "must be > 0")
	}
	if h.Timeout <= 0 {
		v.add(hpath, "timeout", "must be > 0")
	} else if h.Timeout > h.Interval {
		v.add(hpath, "timeout", fmt.Sprintf("must be <= interval (%s)", h.Interval))
	}
	if h.Rise < 1 {
		v.add(hpath, "rise", "must be >= 1")
	}
	if h.Fall < 1 {
		v.add(hpath, "fall", "must be >= 1")
	}
	return h
}
