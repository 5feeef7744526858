package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/sockopt"
)

// Reload makes cfg the running configuration without dropping anything.
// cfg must come from config.Load/Parse (validated, defaults filled). On an
// error nothing changed: the old configuration goes on serving (a listener
// that cannot be bound, a TLS side or pool that cannot be built). On
// success it returns one line per change:
//
//   - A virtual server whose listen address stays keeps its listening
//     socket: the accept loop moves to the new virtual server, connections
//     arriving meanwhile wait in the kernel's backlog. Its connections keep
//     the settings they started with; a keepalive client's next request
//     goes to the new virtual server's pool.
//   - A pool whose settings other than its members stay is kept: its
//     members change in place (pool.SetMembers), a kept member keeps its
//     warm and idle conns and its run-time state, a removed one drains. A
//     pool whose other settings changed is built anew (its members' admin
//     states set at run time and health carried over); the old one closes.
//   - A reuse ConnPool is kept when its pool, server profile and reuse
//     settings stay; else the new one starts empty and the old one closes
//     (its conns in use are closed when given back).
//   - A new virtual server starts; a removed one stops accepting and its
//     connections get global.shutdown_timeout to end.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) ([]string, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	if !s.started || s.stopping {
		s.mu.Unlock()
		return nil, errors.New("proxy: reload: the server is not running")
	}
	old := reloadState{cfg: s.cfg, pools: s.pools, vss: s.vss}
	s.mu.Unlock()

	plan, err := s.prepare(ctx, old, cfg)
	if err != nil {
		plan.abandon()
		return nil, err
	}
	return s.commit(old, plan), nil
}

// reloadState is a configuration in force: what Reload replaces.
type reloadState struct {
	cfg   *config.Config
	pools map[string]*pool.Pool
	vss   []*VirtualServer
}

// reloadPlan is what prepare built for the new configuration. Nothing of it
// runs yet; abandon undoes it.
type reloadPlan struct {
	cfg      *config.Config
	pools    map[string]*pool.Pool
	newPools []*pool.Pool               // built by prepare
	members  map[*pool.Pool]config.Pool // kept pools whose members change
	vss      []*VirtualServer
	prev     map[*VirtualServer]*VirtualServer // new -> the old one it replaces
	taken    map[*VirtualServer]*VirtualServer // new -> the old one whose listener it takes
	bound    []*VirtualServer                  // new ones with a listener of their own
	changes  []string
}

// prepare builds the pools and virtual servers of cfg, reusing what stays,
// and binds the listeners of new addresses.
func (s *Server) prepare(ctx context.Context, old reloadState, cfg *config.Config) (*reloadPlan, error) {
	p := &reloadPlan{cfg: cfg, pools: map[string]*pool.Pool{}, members: map[*pool.Pool]config.Pool{},
		prev: map[*VirtualServer]*VirtualServer{}, taken: map[*VirtualServer]*VirtualServer{}}
	for _, name := range sortedKeys(cfg.Pools) {
		pc := cfg.Pools[name]
		if op, ok := old.pools[name]; ok && sameExceptMembers(old.cfg.Pools[name], pc) {
			p.pools[name] = op
			if !reflect.DeepEqual(old.cfg.Pools[name].Members, pc.Members) {
				p.members[op] = pc
			}
			continue
		}
		np, err := s.buildPool(cfg, pc)
		if err != nil {
			return p, err
		}
		p.newPools = append(p.newPools, np)
		p.pools[name] = np
		if op, ok := old.pools[name]; ok {
			np.Inherit(op)
			p.changes = append(p.changes, fmt.Sprintf("pool %q rebuilt: its settings changed", name))
		} else {
			p.changes = append(p.changes, fmt.Sprintf("pool %q added", name))
		}
	}
	for name := range old.pools {
		if _, ok := cfg.Pools[name]; !ok {
			p.changes = append(p.changes, fmt.Sprintf("pool %q removed", name))
		}
	}
	for _, vc := range cfg.VirtualServers {
		var prev *VirtualServer
		for _, o := range old.vss {
			if o.cfg.Name == vc.Name {
				prev = o
			}
		}
		vs, err := buildVirtualServer(vc, cfg.Client(vc), cfg.Server(vc), cfg.Log.Access, cfg.Pools[vc.Pool], p.pools[vc.Pool], s.logger, prev)
		if err != nil {
			return p, fmt.Errorf("virtual_server %q: %w", vc.Name, err)
		}
		vs.workers = s.workers
		vs.listeners = s.listeners
		p.vss = append(p.vss, vs)
		if prev != nil {
			p.prev[vs] = prev
		}
		if err := p.listen(ctx, vs, old.vss); err != nil {
			return p, err
		}
		p.changes = append(p.changes, describeVS(vs, prev)...)
	}
	for _, o := range old.vss {
		if !slices.ContainsFunc(cfg.VirtualServers, func(vc config.VirtualServer) bool { return vc.Name == o.cfg.Name }) {
			p.changes = append(p.changes, fmt.Sprintf("virtual_server %q removed: its connections get shutdown_timeout", o.cfg.Name))
		}
	}
	for _, vs := range p.vss {
		if vs.tls != nil && (p.prev[vs] == nil || p.prev[vs].tls != vs.tls) {
			vs.tls.certs.SetListenAddr(vs.ln.Addr())
			if err := vs.tls.certs.Start(ctx); err != nil {
				return p, fmt.Errorf("virtual_server %q: tls: %w", vs.cfg.Name, err)
			}
		}
	}
	return p, nil
}

// listen gives vs the listener of the old virtual server on the same
// address, or binds a new one.
func (p *reloadPlan) listen(ctx context.Context, vs *VirtualServer, old []*VirtualServer) error {
	for _, o := range old {
		if o.cfg.Listen == vs.cfg.Listen && !slices.Contains(takenFrom(p.taken), o) {
			p.taken[vs] = o
			return nil
		}
	}
	if err := vs.listen(ctx); err != nil {
		return err
	}
	p.bound = append(p.bound, vs)
	return nil
}

func takenFrom(m map[*VirtualServer]*VirtualServer) []*VirtualServer {
	out := make([]*VirtualServer, 0, len(m))
	for _, o := range m {
		out = append(out, o)
	}
	return out
}

// abandon undoes prepare after a failure: the new listeners, ConnPools, TLS
// sides and pools are closed; nothing old was touched.
func (p *reloadPlan) abandon() {
	for _, vs := range p.bound {
		vs.closeListener(true)
		if vs.parker != nil {
			vs.parker.stop()
		}
	}
	for _, vs := range p.vss {
		prev := p.prev[vs]
		if vs.http != nil && !prev.shares(vs) {
			vs.http.reuser.Close()
		}
		if vs.tls != nil && (prev == nil || prev.tls != vs.tls) {
			vs.tls.certs.Close()
		}
	}
	for _, np := range p.newPools {
		np.Close()
	}
}

// commit puts the plan in force. It cannot fail.
func (s *Server) commit(old reloadState, p *reloadPlan) []string {
	changes := p.changes
	for op, pc := range p.members {
		for _, c := range op.SetMembers(pc.Members) {
			changes = append(changes, fmt.Sprintf("pool %q: %s", pc.Name, c))
		}
	}
	for _, np := range p.newPools {
		np.Start()
	}
	for _, vs := range p.vss {
		if o := p.taken[vs]; o != nil {
			ln := o.handOver()
			if !reflect.DeepEqual(o.client, vs.client) {
				if err := sockopt.Reapply(ln, vs.client); err != nil {
					vs.logger.Warn("reload: listener options of the new client profile not applied; they apply after a restart", zap.Error(err))
				}
			}
			vs.adopt(ln)
		}
	}

	s.mu.Lock()
	s.cfg, s.pools, s.vss = p.cfg, p.pools, p.vss
	s.mu.Unlock()
	for _, vs := range p.vss {
		vs.serve()
	}

	// The old virtual servers: replaced ones lend their keepalive clients'
	// next requests to their successor and go on until their conns end;
	// removed ones drain for shutdown_timeout.
	for _, o := range old.vss {
		next := p.successor(o)
		if next == nil {
			s.drainRemoved(o, p.cfg.Global.ShutdownTimeout)
			continue
		}
		o.next.Store(next)
		if !o.handedOver {
			o.stopListening()
		}
		s.keepUntilDone(o)
	}
	s.closeUnused(old, p)
	return changes
}

// successor is the new virtual server of o's name, or nil.
func (p *reloadPlan) successor(o *VirtualServer) *VirtualServer {
	for vs, prev := range p.prev {
		if prev == o {
			return vs
		}
	}
	return nil
}

// closeUnused closes, in the background, the old reuse ConnPools that the
// new virtual server of the same name did not take over (their lent conns
// are closed when given back; a Get in flight on one is retried on the
// successor's), then the old pools no longer in the configuration or
// rebuilt. A removed virtual server's ConnPool, or one whose successor is
// in tcp mode, serves its requests to the end: release closes it.
func (s *Server) closeUnused(old reloadState, p *reloadPlan) {
	var reusers []*pool.ConnPool
	for _, o := range old.vss {
		if next := p.successor(o); next != nil && next.http != nil && !next.shares(o) {
			reusers = append(reusers, o.http.reuser)
		}
	}
	var pools []*pool.Pool
	for name, op := range old.pools {
		if p.pools[name] != op {
			pools = append(pools, op)
		}
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		for _, r := range reusers {
			r.Close()
		}
		for _, op := range pools {
			op.Close()
		}
	}()
}

// drainRemoved stops o (a virtual server the new configuration no longer
// has) accepting, unless its listener went to a new virtual server on the
// same address, and gives its connections timeout to end.
func (s *Server) drainRemoved(o *VirtualServer, timeout time.Duration) {
	o.closeListener(true)
	o.letIdleGo()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = o.drain(ctx)
		s.release(o)
	}()
}

// keepUntilDone keeps o, a replaced virtual server, among the retired ones
// until its last connection ends (Shutdown drains it with the rest), then
// releases what it holds alone.
func (s *Server) keepUntilDone(o *VirtualServer) {
	s.mu.Lock()
	s.retired = append(s.retired, o)
	s.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		o.conns.Wait()
		s.mu.Lock()
		s.retired = slices.DeleteFunc(s.retired, func(x *VirtualServer) bool { return x == o })
		s.mu.Unlock()
		s.release(o)
	}()
}

// release frees what a virtual server that no longer serves holds and no
// virtual server in force shares: its parker, TLS side, reuse ConnPool.
func (s *Server) release(o *VirtualServer) {
	o.stopAccept()
	o.letIdleGo()
	o.cutConns()
	if o.parker != nil {
		o.parker.stop()
	}
	s.mu.Lock()
	sharedTLS := slices.ContainsFunc(s.vss, func(vs *VirtualServer) bool { return o.tls != nil && vs.tls == o.tls })
	sharedReuser := slices.ContainsFunc(s.vss, func(vs *VirtualServer) bool { return o.shares(vs) })
	s.mu.Unlock()
	if o.tls != nil && !sharedTLS {
		o.tls.certs.Close()
	}
	if o.http != nil && !sharedReuser {
		o.http.reuser.Close() // idempotent: closeUnused may have closed it
	}
}

// cutRelaysTo ends the tcp relays to m, a member whose drain_timeout is
// up, in every virtual server (replaced ones included).
func (s *Server) cutRelaysTo(m *pool.Member) {
	s.mu.Lock()
	all := append(slices.Clone(s.vss), s.retired...)
	s.mu.Unlock()
	n := 0
	for _, vs := range all {
		vs.relays.each(func(r *relay) {
			if r.member == m {
				r.abort(closeEvent{SideTether, HowShutdown})
				n++
			}
		})
	}
	if n > 0 {
		s.logger.Info("drain over: relays to the member closed", zap.String("member", m.Address()), zap.Int("relays", n))
	}
}

// handOver ends o's accept loop without closing its listener and returns
// the listener for the virtual server that replaces o. Connections that
// arrive meanwhile wait in the backlog: none is refused.
func (vs *VirtualServer) handOver() *net.TCPListener {
	vs.yielding.Store(true)
	close(vs.yield)
	_ = vs.ln.SetDeadline(time.Unix(1, 0)) // wakes a blocked Accept
	<-vs.acceptDone
	_ = vs.ln.SetDeadline(time.Time{})
	vs.handedOver = true
	return vs.ln
}

// stopListening closes the listener of a replaced virtual server whose
// successor listens elsewhere, without the shutdown of its connections.
func (vs *VirtualServer) stopListening() {
	vs.yielding.Store(true)
	close(vs.yield)
	if vs.listeners != nil {
		_ = vs.ln.SetDeadline(time.Unix(1, 0)) // wakes a blocked Accept
		<-vs.acceptDone
		vs.listeners.Release(vs.cfg.Listen, vs.ln)
		_ = vs.ln.Close()
		return
	}
	_ = vs.ln.Close()
	<-vs.acceptDone
}

// current follows the replacements of vs to the virtual server of its name
// in force.
func (vs *VirtualServer) current() *VirtualServer {
	cur := vs
	for n := cur.next.Load(); n != nil; n = cur.next.Load() {
		cur = n
	}
	return cur
}

// reuser is the reuse ConnPool for vs's client conns' next request: that
// of the virtual server in force under vs's name when it is in http mode,
// else vs's own.
func (vs *VirtualServer) reuser() *pool.ConnPool {
	if cur := vs.current(); cur.http != nil {
		return cur.http.reuser
	}
	return vs.http.reuser
}

// sharedReuser returns prev's reuse ConnPool when vs may keep it: same
// pool, same server profile (the same Dialer), same reuse settings. prev may
// be nil.
func (prev *VirtualServer) sharedReuser(vs *VirtualServer, pc config.Pool) *pool.ConnPool {
	if prev == nil || prev.http == nil || prev.dialer != vs.dialer || !reflect.DeepEqual(prev.http.reuse, pc.Reuse) {
		return nil
	}
	return prev.http.reuser
}

// sharedTLS returns prev's TLS side when vc's tls table is the same.
func (prev *VirtualServer) sharedTLS(vc config.VirtualServer) *tlsSide {
	if prev == nil || prev.tls == nil || prev.cfg.TLS == nil || vc.TLS == nil || !reflect.DeepEqual(*prev.cfg.TLS, *vc.TLS) {
		return nil
	}
	return prev.tls
}

// shares reports whether vs kept prev's reuse ConnPool. prev may be nil.
func (prev *VirtualServer) shares(vs *VirtualServer) bool {
	return prev != nil && prev.http != nil && vs.http != nil && prev.http.reuser == vs.http.reuser
}

// describeVS says what changed for one virtual server of the new config.
func describeVS(vs, prev *VirtualServer) []string {
	name := vs.cfg.Name
	if prev == nil {
		return []string{fmt.Sprintf("virtual_server %q added on %s", name, vs.cfg.Listen)}
	}
	var out []string
	if prev.cfg.Listen != vs.cfg.Listen {
		out = append(out, fmt.Sprintf("virtual_server %q moved from %s to %s", name, prev.cfg.Listen, vs.cfg.Listen))
	}
	if !reflect.DeepEqual(prev.client, vs.client) {
		out = append(out, fmt.Sprintf("virtual_server %q: client profile %q changed (new connections)", name, vs.client.Name))
	}
	if !reflect.DeepEqual(prev.server, vs.server) {
		out = append(out, fmt.Sprintf("virtual_server %q: server profile %q changed (new member connections)", name, vs.server.Name))
	}
	if prev.cfg.Pool != vs.cfg.Pool {
		out = append(out, fmt.Sprintf("virtual_server %q: pool %q instead of %q", name, vs.cfg.Pool, prev.cfg.Pool))
	}
	pc, vc := prev.cfg, vs.cfg
	pc.Listen, vc.Listen, pc.Pool, vc.Pool = "", "", "", ""
	pc.ClientProfile, vc.ClientProfile, pc.ServerProfile, vc.ServerProfile = "", "", "", ""
	if len(out) == 0 && !reflect.DeepEqual(pc, vc) {
		out = append(out, fmt.Sprintf("virtual_server %q: settings changed (new connections)", name))
	}
	return out
}

// sameExceptMembers reports whether two configs of a pool differ at most
// in their members.
func sameExceptMembers(a, b config.Pool) bool {
	a.Members, b.Members = nil, nil
	return reflect.DeepEqual(a, b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
