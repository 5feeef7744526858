//go:build tether_nocounters

package pool

// counter counts nothing in this build (-tags tether_nocounters): see
// counter.go. Only bench/compare (-only cost) builds it; the tests need the real one.
type counter struct{}

func (*counter) Add(uint64)   {}
func (*counter) Load() uint64 { return 0 }
