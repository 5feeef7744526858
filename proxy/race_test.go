//go:build race

package proxy

// raceEnabled: under the race detector sync.Pool drops a share of what is
// put back on purpose, so allocation counts through a pool mean nothing;
// .ci/run runs the allocation tests again without -race.
const raceEnabled = true
