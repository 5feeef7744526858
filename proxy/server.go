package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/certs"
)

// Server is every virtual server and pool of one configuration.
//
// Lifecycle: New builds (nothing is bound), Start binds every listener (all
// or none) and begins serving, Shutdown stops accepting, lets connections
// finish until its context ends, then closes the rest and stops the pools.
type Server struct {
	cfg    *config.Config
	logger *zap.Logger

	pools   map[string]*pool.Pool
	vss     []*VirtualServer
	workers *workers // run every virtual server's conns; stopped by Shutdown

	mu       sync.Mutex
	started  bool
	stopping bool // Shutdown began: no longer ready for new connections
	// retired are virtual servers a reload replaced that still have
	// connections (Shutdown drains them too); bg counts the goroutines
	// that wait for them and close what a reload left unused.
	retired []*VirtualServer
	bg      sync.WaitGroup
	// reloadMu serialises Reload.
	reloadMu sync.Mutex
	// listeners, when not nil, gives the listeners (SetListeners).
	listeners Listeners
}

// New builds the pools and virtual servers of cfg. cfg must come from
// config.Load/Parse (validated, defaults filled).
func New(cfg *config.Config, logger *zap.Logger) (*Server, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{cfg: cfg, logger: logger, pools: map[string]*pool.Pool{}, workers: newWorkers()}
	for _, pc := range cfg.Pools {
		p, err := s.buildPool(cfg, pc)
		if err != nil {
			s.closePools()
			return nil, err
		}
		s.pools[pc.Name] = p
	}
	for _, vc := range cfg.VirtualServers {
		vs, err := newVirtualServer(vc, cfg.Client(vc), cfg.Server(vc), cfg.Log.Access, cfg.Pools[vc.Pool], s.pools[vc.Pool], logger)
		if err != nil {
			s.closeVirtualServers()
			s.closePools()
			return nil, fmt.Errorf("virtual_server %q: %w", vc.Name, err)
		}
		vs.workers = s.workers
		s.vss = append(s.vss, vs)
	}
	return s, nil
}

// Start binds every listener and starts serving. If any listener cannot be
// bound (the port is in use, the address is not local ...), nothing is left
// open and the error names the virtual server and address.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("proxy: server already started")
	}
	for i, vs := range s.vss {
		vs.listeners = s.listeners
		if err := vs.listen(ctx); err != nil {
			// Not for good: a received listener goes on serving in the
			// process that passed it.
			for _, done := range s.vss[:i] {
				done.closeListener(false)
			}
			s.closeVirtualServers()
			s.closePools()
			return err
		}
	}
	for i, vs := range s.vss {
		// After the listeners: an ACME tls-alpn-01 challenge is answered
		// on the virtual server's own listener.
		if vs.tls == nil {
			continue
		}
		vs.tls.certs.SetListenAddr(vs.ln.Addr())
		if err := vs.tls.certs.Start(ctx); err != nil {
			for _, done := range s.vss {
				done.closeListener(false)
			}
			s.closeVirtualServers()
			s.closePools()
			return fmt.Errorf("virtual_server %q: tls: %w", s.vss[i].cfg.Name, err)
		}
	}
	for _, p := range s.pools {
		p.Start()
	}
	for _, vs := range s.vss {
		vs.serve()
	}
	s.started = true
	return nil
}

// buildPool builds the pool pc of cfg, with TLS toward its members when pc
// says so.
func (s *Server) buildPool(cfg *config.Config, pc config.Pool) (*pool.Pool, error) {
	p, err := pool.New(pc, s.logger)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", pc.Name, err)
	}
	p.OnDrainEnd(s.cutRelaysTo)
	if pc.TLS != nil {
		if err := s.poolTLS(cfg, p, pc); err != nil {
			p.Close()
			return nil, fmt.Errorf("pool %q: tls: %w", pc.Name, err)
		}
	}
	return p, nil
}

// poolTLS makes p speak TLS to its members. ALPN offers http/1.1 when an
// http-mode virtual server uses the pool, unless the config names some.
func (s *Server) poolTLS(cfg *config.Config, p *pool.Pool, pc config.Pool) error {
	var alpn []string
	for _, vc := range cfg.VirtualServers {
		if vc.Pool == pc.Name && vc.Mode == config.ModeHTTP {
			alpn = []string{"http/1.1"}
		}
	}
	base, err := certs.ClientConfig(*pc.TLS, alpn, s.logger.With(zap.String("pool", pc.Name)))
	if err != nil {
		return err
	}
	p.SetTLS(func(addr string) *tls.Config { return certs.ForMember(base, addr) }, pc.TLS.HandshakeTimeout)
	return nil
}

// ReloadCertificates re-reads every virtual server's certificate files
// (SIGHUP). A virtual server whose files fail keeps its old certificates;
// the error names each failure. Open connections are not touched.
func (s *Server) ReloadCertificates() error {
	var errs []error
	for _, vs := range s.VirtualServers() {
		if vs.tls == nil {
			continue
		}
		if err := vs.tls.certs.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("virtual_server %q: %w", vs.cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// VirtualServer returns the named virtual server, or nil.
func (s *Server) VirtualServer(name string) *VirtualServer {
	for _, vs := range s.VirtualServers() {
		if vs.cfg.Name == name {
			return vs
		}
	}
	return nil
}

// Pool returns the named pool, or nil.
func (s *Server) Pool(name string) *pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools[name]
}

// Shutdown stops accepting on every listener, waits for open connections to
// finish until ctx is done, then ends the remaining ones (each side closed
// with its profile's close mode), stops the pools and returns once every
// goroutine has exited. It returns ctx.Err() when connections had to be cut.
// An idle keepalive client conn is closed at once (one whose request
// already reached tether is served first); see ShutdownGently.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.shutdown(ctx, false, 0)
}

// shutdown is Shutdown, or ShutdownGently with gentle (idle conns kept at
// most maxGrace when it is > 0).
func (s *Server) shutdown(ctx context.Context, gentle bool, maxGrace time.Duration) error {
	s.reloadMu.Lock() // no reload under way, none after
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	s.stopping = true
	all := append(slices.Clone(s.vss), s.retired...)
	s.mu.Unlock()
	for _, vs := range all {
		vs.closeListener(false)
	}
	var graces []*time.Timer
	for _, vs := range all {
		if !gentle || vs.http == nil || vs.ln == nil {
			vs.letIdleGo()
			continue
		}
		grace := vs.idleGrace(ctx)
		if maxGrace > 0 {
			grace = min(grace, maxGrace)
		}
		graces = append(graces, time.AfterFunc(grace, vs.letIdleGo))
	}
	var cut error
	for _, vs := range all {
		if err := vs.drain(ctx); err != nil {
			cut = err
		}
	}
	for _, t := range graces {
		t.Stop()
	}
	for _, vs := range all {
		vs.letIdleGo() // idempotent; stops what waits on it
	}
	s.bg.Wait() // retired virtual servers released, unused pools closed
	s.closeVirtualServers()
	s.closePools()
	s.workers.stop()
	return cut
}

// closeVirtualServers releases what virtual servers hold beyond their
// connections (http mode: the idle member conns of their reuse ConnPools; the
// parker, already stopped by a drain, not after a failed Start).
func (s *Server) closeVirtualServers() {
	for _, vs := range s.vss {
		if vs.parker != nil {
			vs.parker.stop()
		}
		if vs.http != nil {
			vs.http.reuser.Close()
		}
		if vs.tls != nil {
			vs.tls.certs.Close()
		}
	}
}

func (s *Server) closePools() {
	for _, p := range s.pools {
		p.Close()
	}
}

// ListenAddr returns the bound address of the named virtual server (useful
// with port 0), or nil.
func (s *Server) ListenAddr(name string) net.Addr {
	if vs := s.VirtualServer(name); vs != nil {
		return vs.Addr()
	}
	return nil
}
