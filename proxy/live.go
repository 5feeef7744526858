package proxy

import "sync"

// liveSet is what a virtual server is serving (http conns, tcp relays), so
// that shutdown can wake or cut each with one walk instead of a
// context.AfterFunc per connection (an allocation and ~1.5 KiB each).
type liveSet[T comparable] struct {
	mu sync.Mutex
	m  map[T]struct{}
}

func (s *liveSet[T]) add(x T) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[T]struct{})
	}
	s.m[x] = struct{}{}
	s.mu.Unlock()
}

func (s *liveSet[T]) remove(x T) {
	s.mu.Lock()
	delete(s.m, x)
	s.mu.Unlock()
}

// each runs f on every member under the set's lock: f must not add or
// remove (it may wake a goroutine that will, later).
func (s *liveSet[T]) each(f func(T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for x := range s.m {
		f(x)
	}
}
