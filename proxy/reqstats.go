package proxy

import (
	"sync/atomic"
	"time"
)

// requestBounds are the upper bounds of the request duration buckets, the
// Prometheus client's default buckets (5 ms to 10 s).
var requestBounds = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// requestStats counts an http virtual server's requests by status class
// and their durations in fixed buckets: a few atomic adds per request, no
// allocation and no lock. An exporter reads them when asked (RequestStats).
type requestStats struct {
	classes [5]atomic.Uint64                      // 1xx..5xx
	buckets [len(requestBounds) + 1]atomic.Uint64 // the last one: over every bound
	sumNs   atomic.Int64
}

// observe counts one request answered with status (0: no answer, not
// counted) that took d.
func (r *requestStats) observe(status int, d time.Duration) {
	c := status/100 - 1
	if c < 0 || c >= len(r.classes) {
		return
	}
	r.classes[c].Add(1)
	i := 0
	for i < len(requestBounds) && d > requestBounds[i] {
		i++
	}
	r.buckets[i].Add(1)
	r.sumNs.Add(int64(d))
}

// RequestStats is a snapshot of an http virtual server's request counters.
type RequestStats struct {
	// ByClass counts the requests answered by status class: ByClass[0]
	// 1xx ... ByClass[4] 5xx (a tunnel counts when it ends, under the
	// status that opened it).
	ByClass [5]uint64
	// Bounds are the duration buckets' upper bounds; Buckets[i] counts the
	// requests that took at most Bounds[i] (cumulative, as Prometheus
	// wants), Count all of them, Sum their total time.
	Bounds  []time.Duration
	Buckets []uint64
	Count   uint64
	Sum     time.Duration
}

// RequestStats returns the request counters (zero in tcp mode). The fields
// are read one by one, so they may be from slightly different instants.
func (vs *VirtualServer) RequestStats() RequestStats {
	var st RequestStats
	if vs.http == nil {
		return st
	}
	r := &vs.n.reqs
	for i := range r.classes {
		st.ByClass[i] = r.classes[i].Load()
	}
	st.Bounds = requestBounds[:]
	st.Buckets = make([]uint64, len(requestBounds))
	var n uint64
	for i := range r.buckets {
		n += r.buckets[i].Load()
		if i < len(st.Buckets) {
			st.Buckets[i] = n
		}
	}
	st.Count, st.Sum = n, time.Duration(r.sumNs.Load())
	return st
}
