//go:build !tether_nocounters

package pool

import "sync/atomic"

// counter is one of a member's reuse counters (ReuseStats). Built with
// -tags tether_nocounters it counts nothing: bench/compare -only cost builds tether that
// way to measure what the counters cost the request path.
type counter struct{ v atomic.Uint64 }

func (c *counter) Add(n uint64) { c.v.Add(n) }
func (c *counter) Load() uint64 { return c.v.Load() }
