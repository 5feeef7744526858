package proxy

import (
	"sync/atomic"
	"time"
)

// logLimit lets a repeated log message through at most once per interval
// (a refused connection, a failed handshake, a socket that could not be
// parked: each can happen thousands of times a second) and counts the
// ones it held back. The zero value lets the first message through; with
// interval 0 every message passes. It is safe for concurrent use: when
// several goroutines ask at once, one of them wins.
type logLimit struct {
	interval   time.Duration
	last       atomic.Int64  // unix nanos of the last message let through
	suppressed atomic.Uint64 // held back since then
}

// allow reports whether a message may be written at now. When it may,
// suppressed is how many were held back since the last one (and the count
// starts again); when it may not, the message is counted as held back.
func (l *logLimit) allow(now time.Time) (ok bool, suppressed uint64) {
	t := now.UnixNano()
	last := l.last.Load()
	if (last != 0 && t-last < int64(l.interval)) || !l.last.CompareAndSwap(last, t) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
