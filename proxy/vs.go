package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
)

// VirtualServer is one listening address in tcp mode.
type VirtualServer struct {
	cfg       config.VirtualServer
	client    config.TCPProfile
	server    config.TCPProfile
	idle      time.Duration
	halfClose time.Duration
	accessLog bool
	pool      *pool.Pool
	dialer    *pool.Dialer
	http      *httpSide       // nil in tcp mode
	parker    *parker         // holds idle sockets (http client conns, relay directions); nil if epoll failed
	workers   *workers        // the Server's: runs accepted conns and parked sockets taken up
	listeners Listeners       // the Server's: where listen gets the listener; nil = bind
	tls       *tlsSide        // nil without TLS termination
	relays    liveSet[*relay] // the running relays (tcp mode, http upgrade tunnels), for shutdown
	live      *liveConns      // every proxied client conn, for Connections (inspect_conns.go); shared with the virtual server a reload puts in its place
	logger    *zap.Logger

	ln    *net.TCPListener
	slots chan struct{} // nil = no connection limit

	// stop ends the accept loop; releaseIdle lets idle keepalive conns go
	// (at once at Shutdown, after a grace at ShutdownGently); cut ends
	// open connections (drain timed out).
	stopAccept  context.CancelFunc
	acceptCtx   context.Context
	releaseIdle context.CancelFunc
	idleCtx     context.Context
	cutConns    context.CancelFunc
	cutCtx      context.Context
	acceptDone  chan struct{}
	conns       sync.WaitGroup

	// n are the counters, shared with the VirtualServer of the same name
	// that a reload puts in its place, so that they go on across reloads.
	n *vsCounters

	// Reload: next is the VirtualServer that took this one's place (its
	// keepalive clients' next requests go to next's pool, see reuser);
	// yield ends the accept loop without closing the listener, which next
	// takes over (handOver); handedOver: the listener is next's.
	next       atomic.Pointer[VirtualServer]
	yield      chan struct{}
	yielding   atomic.Bool
	handedOver bool

	limitLog logLimit // "limit reached": once a second
	errorLog logLimit // logError: once a second
}

// vsCounters are a virtual server's counters (see Stats).
type vsCounters struct {
	active    atomic.Int64
	accepted  atomic.Uint64
	limitHits atomic.Uint64
	// tcp mode: member conns relaying now, and connected since start.
	serverActive atomic.Int64
	serverOpened atomic.Uint64
	// http mode: request counters and client conns holding buffers.
	reqs requestStats
	busy atomic.Int64
}

func newVirtualServer(vc config.VirtualServer, client, server config.TCPProfile, accessLog bool, pc config.Pool, p *pool.Pool, logger *zap.Logger) (*VirtualServer, error) {
	return buildVirtualServer(vc, client, server, accessLog, pc, p, logger, nil)
}

// buildVirtualServer is newVirtualServer for a reload: prev, when not nil,
// is the running virtual server of the same name, which the new one
// replaces. The new one keeps prev's counters, and what is unchanged of
// prev: the reuse ConnPool (same pool, server profile and reuse settings:
// its idle and warm member conns stay), the TLS side (same tls table: the
// certificates and session ticket keys stay) and the connection limit's
// slots (same max_connections: prev's conns still hold theirs).
func buildVirtualServer(vc config.VirtualServer, client, server config.TCPProfile, accessLog bool, pc config.Pool, p *pool.Pool, logger *zap.Logger, prev *VirtualServer) (*VirtualServer, error) {
	vs := &VirtualServer{
		cfg:       vc,
		client:    client,
		server:    server,
		idle:      config.RelayIdleTimeout(client, server),
		halfClose: config.RelayHalfCloseTimeout(client, server),
		accessLog: accessLog,
		pool:      p,
		dialer:    p.Dialer(server),
		logger:    logger.With(zap.String("virtual_server", vc.Name)),
		limitLog:  logLimit{interval: time.Second},
		errorLog:  logLimit{interval: time.Second},
		n:         &vsCounters{},
		live:      &liveConns{},
		yield:     make(chan struct{}),
	}
	if prev != nil {
		vs.n, vs.live = prev.n, prev.live // the conns it still serves stay listed
		if vc.MaxConnections == prev.cfg.MaxConnections {
			vs.slots = prev.slots
		}
	}
	if vc.MaxConnections > 0 && vs.slots == nil {
		vs.slots = make(chan struct{}, vc.MaxConnections)
	}
	if vc.Mode == config.ModeHTTP {
		r := prev.sharedReuser(vs, pc)
		if r == nil {
			r = pool.NewReusePool(vs.dialer, pc.Reuse)
		}
		vs.http = newHTTPSide(vc, pc, r, vs.n)
	}
	if vc.TLS != nil {
		if ts := prev.sharedTLS(vc); ts != nil {
			vs.tls = ts
			return vs, nil
		}
		ts, err := newTLSSide(*vc.TLS, vs.logger)
		if err != nil {
			if vs.http != nil && !prev.shares(vs) {
				vs.http.reuser.Close()
			}
			return nil, err
		}
		vs.tls = ts
	}
	return vs, nil
}

// Name is the virtual server's name.
func (vs *VirtualServer) Name() string { return vs.cfg.Name }

// Addr is the bound listen address (nil before Start).
func (vs *VirtualServer) Addr() net.Addr {
	if vs.ln == nil {
		return nil
	}
	return vs.ln.Addr()
}

// Stats is a snapshot of a virtual server's counters.
type Stats struct {
	Active    int64  // client connections open now
	Accepted  uint64 // client connections accepted since start
	LimitHits uint64 // times the accept loop paused at max_connections
	// HTTPBusy (http mode) is how many client connections hold request
	// buffers now: a request in progress. Idle keepalive connections
	// hold none.
	HTTPBusy int64
	// Parked is how many idle sockets wait without a goroutine now: http
	// client connections between requests, tcp relay directions.
	Parked int64
	// Parks counts the times a socket was parked since start;
	// ParkFailures the times one could not be (it kept its goroutine).
	Parks, ParkFailures uint64
	// ServerActive and ServerOpened (tcp mode) are the member conns
	// relaying now and those connected since start. (In http mode member
	// conns are the reuse pool's: ReuseStats.)
	ServerActive int64
	ServerOpened uint64
}

// Stats returns the current counters.
func (vs *VirtualServer) Stats() Stats {
	st := Stats{Active: vs.n.active.Load(), Accepted: vs.n.accepted.Load(), LimitHits: vs.n.limitHits.Load(),
		ServerActive: vs.n.serverActive.Load(), ServerOpened: vs.n.serverOpened.Load()}
	if vs.http != nil {
		st.HTTPBusy = vs.n.busy.Load()
	}
	if vs.parker != nil {
		st.Parked, st.Parks, st.ParkFailures = vs.parker.parkedNow(), vs.parker.parks.Load(), vs.parker.failures.Load()
	}
	return st
}

// adopt makes ln the virtual server's listener (bound by listen, or taken
// over from the virtual server it replaces) and sets up what serving needs:
// the shutdown contexts and the parker.
func (vs *VirtualServer) adopt(ln *net.TCPListener) {
	vs.ln = ln
	vs.acceptCtx, vs.stopAccept = context.WithCancel(context.Background())
	vs.idleCtx, vs.releaseIdle = context.WithCancel(context.Background())
	vs.cutCtx, vs.cutConns = context.WithCancel(context.Background())
	if p, err := newParker(vs.logger, vs.workers); err != nil {
		// Idle conns then keep their goroutines while they wait.
		vs.logger.Warn("idle connections will not be parked", zap.Error(err))
	} else {
		vs.parker = p
	}
	if vs.http != nil {
		hs := vs.http
		context.AfterFunc(vs.idleCtx, func() {
			hs.shutdown(false)
			if vs.parker != nil {
				vs.parker.stop()
			}
		})
		context.AfterFunc(vs.cutCtx, func() {
			vs.relays.each(func(r *relay) { r.abort(closeEvent{SideTether, HowShutdown}) }) // upgrade tunnels
			hs.shutdown(true)
		})
	} else {
		// Relays drain: their parked directions stay parked until the cut
		// aborts them (abort takes them up).
		context.AfterFunc(vs.cutCtx, func() {
			vs.relays.each(func(r *relay) { r.abort(closeEvent{SideTether, HowShutdown}) })
			if vs.parker != nil {
				vs.parker.stop()
			}
		})
	}
}

func (vs *VirtualServer) serve() {
	vs.logger.Info("listening", zap.Stringer("address", vs.ln.Addr()), zap.String("mode", vs.cfg.Mode),
		zap.String("client_profile", vs.client.Name), zap.String("server_profile", vs.server.Name),
		zap.Duration("idle_timeout", vs.idle))
	vs.acceptDone = make(chan struct{})
	go vs.acceptLoop()
}

// drain waits for open connections until ctx is done, then cuts them.
func (vs *VirtualServer) drain(ctx context.Context) error {
	if vs.ln == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		vs.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		vs.cutConns()
		return nil
	case <-ctx.Done():
	}
	if n := vs.n.active.Load(); n > 0 {
		vs.logger.Warn("shutdown: closing connections still open", zap.Int64("connections", n))
	}
	vs.cutConns()
	<-done
	return ctx.Err()
}

// acceptLoop accepts client connections within the connection limit. At the
// limit it stops accepting, so the kernel's backlog (and then the clients'
// SYN retries) hold new connections: backpressure instead of refusal.
func (vs *VirtualServer) acceptLoop() {
	defer close(vs.acceptDone)
	var pause time.Duration
	for {
		if !vs.acquireSlot() {
			return
		}
		c, err := vs.ln.AcceptTCP()
		if err != nil {
			vs.releaseSlot()
			if vs.acceptCtx.Err() != nil || vs.yielding.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE, ENFILE, ENOBUFS ...: back off like net/http does.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			vs.logError("accept failed", zap.Error(err), zap.Duration("retry_in", pause))
			select {
			case <-time.After(pause):
			case <-vs.acceptCtx.Done():
				return
			}
			continue
		}
		pause = 0
		vs.n.accepted.Add(1)
		vs.n.active.Add(1)
		vs.conns.Add(1)
		vs.workers.run(workerJob{vs: vs, c: c})
	}
}

// acquireSlot takes a connection slot, waiting at the limit. It logs the
// limit at most once per second while waiting. It returns false when the
// accept loop must end.
func (vs *VirtualServer) acquireSlot() bool {
	if vs.slots == nil {
		return vs.acceptCtx.Err() == nil && !vs.yielding.Load()
	}
	select {
	case vs.slots <- struct{}{}:
		return true
	default:
	}
	vs.n.limitHits.Add(1)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		vs.logLimit()
		select {
		case vs.slots <- struct{}{}:
			return true
		case <-vs.acceptCtx.Done():
			return false
		case <-vs.yield:
			return false
		case <-tick.C:
		}
	}
}

func (vs *VirtualServer) releaseSlot() {
	if vs.slots != nil {
		<-vs.slots
	}
}

func (vs *VirtualServer) logLimit() {
	if ok, _ := vs.limitLog.allow(time.Now()); !ok {
		return
	}
	vs.logger.Warn("connection limit reached: not accepting until a connection closes",
		zap.Int("max_connections", vs.cfg.MaxConnections), zap.Uint64("times_reached", vs.n.limitHits.Load()))
}

// logError logs at error level at most once per second per virtual server,
// saying how many similar messages were dropped in between.
func (vs *VirtualServer) logError(msg string, fields ...zap.Field) {
	ok, n := vs.errorLog.allow(time.Now())
	if !ok {
		return
	}
	if n > 0 {
		fields = append(fields, zap.Uint64("suppressed_since_last", n))
	}
	vs.logger.Error(msg, fields...)
}

// Mode is the virtual server's mode, config.ModeTCP or config.ModeHTTP.
func (vs *VirtualServer) Mode() string { return vs.cfg.Mode }

// PoolName is the name of the virtual server's pool.
func (vs *VirtualServer) PoolName() string { return vs.cfg.Pool }
