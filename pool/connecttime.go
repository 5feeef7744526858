package pool

import (
	"sync/atomic"
	"time"
)

// connectBounds are the upper bounds of the connect duration buckets.
var connectBounds = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 5 * time.Second,
}

// connectTimes counts a member's successful dials by duration in fixed
// buckets: two atomic adds per dial, no lock.
type connectTimes struct {
	buckets [len(connectBounds) + 1]atomic.Uint64 // the last one: over every bound
	sumNs   atomic.Int64
}

func (c *connectTimes) observe(d time.Duration) {
	i := 0
	for i < len(connectBounds) && d > connectBounds[i] {
		i++
	}
	c.buckets[i].Add(1)
	c.sumNs.Add(int64(d))
}

// Durations is a snapshot of a duration histogram: Buckets[i] counts the
// observations of at most Bounds[i] (cumulative, as Prometheus wants),
// Count all of them, Sum their total.
type Durations struct {
	Bounds  []time.Duration
	Buckets []uint64
	Count   uint64
	Sum     time.Duration
}

// ConnectDurations returns how long the member's successful dials took
// (TCP connect, and the TLS handshake when the pool speaks TLS). The
// buckets are read one by one, so they may be from slightly different
// instants.
func (m *Member) ConnectDurations() Durations {
	d := Durations{Bounds: connectBounds[:], Buckets: make([]uint64, len(connectBounds))}
	c := &m.connectTimes
	for i := range c.buckets {
		d.Count += c.buckets[i].Load()
		if i < len(d.Buckets) {
			d.Buckets[i] = d.Count
		}
	}
	d.Sum = time.Duration(c.sumNs.Load())
	return d
}
