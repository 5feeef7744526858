package proxy

import (
	"slices"
	"sort"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
)

// What the admin API reads: read-only views of a running Server.

// VirtualServers returns the virtual servers in config order (a copy of
// the slice; the virtual servers themselves are shared).
func (s *Server) VirtualServers() []*VirtualServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.vss)
}

// Config returns the configuration in force (the last one Reload put in
// force, or New's).
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Pools returns the pools in name order.
func (s *Server) Pools() []*pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]*pool.Pool, 0, len(s.pools))
	for _, p := range s.pools {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name() < ps[j].Name() })
	return ps
}

// Ready reports whether the Server takes new connections: Start bound
// every listener and Shutdown has not begun.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started && !s.stopping
}

// Started reports whether Start bound every listener; it stays true after
// Shutdown.
func (s *Server) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Config returns the virtual server's configuration.
func (vs *VirtualServer) Config() config.VirtualServer { return vs.cfg }

// Profiles returns the client-side and server-side TCP profiles, resolved.
func (vs *VirtualServer) Profiles() (client, server config.TCPProfile) {
	return vs.client, vs.server
}

// ReuseStats returns the per-member counters of the virtual server's reuse
// ConnPool (http mode), in pool order; nil in tcp mode.
func (vs *VirtualServer) ReuseStats() []pool.ReuseStats {
	if vs.http == nil {
		return nil
	}
	return vs.http.reuser.Stats()
}

// TLS reports whether the virtual server terminates TLS.
func (vs *VirtualServer) TLS() bool { return vs.tls != nil }
