package proxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/sockopt"
)

// Listeners is where a Server gets its listening sockets when they may
// come from elsewhere: from the process it replaces (a hot upgrade passes
// them as file descriptors) or from systemd (socket activation). Without
// one (SetListeners not called) the server binds every address itself.
type Listeners interface {
	// Listen returns the listener of the virtual server name, whose
	// configured listen address is addr: one received from elsewhere
	// (inherited true), or the one bind makes. bind applies the virtual
	// server's client profile (sockopt.Listen); the server applies the
	// profile's listener options to a received one (sockopt.Reapply).
	// Its error, when it binds, is bind's, unwrapped.
	Listen(ctx context.Context, name, addr string, bind func(context.Context) (*net.TCPListener, error)) (ln *net.TCPListener, inherited bool, err error)
	// Release says that ln, which Listen returned for addr, is closed for
	// good (a reload removed its virtual server, moved it to another
	// address, or failed after binding it): copies of the socket kept
	// for a next process must stop listening too, or connections would
	// wait in a backlog nobody accepts from. The server calls it after
	// its accept loop on ln stopped and before it closes ln. Shutdown
	// does not call it: its listeners may live on in a new process.
	Release(addr string, ln *net.TCPListener)
}

// SetListeners makes the server get its listeners from l (nil: bind them
// itself), at Start and for the new addresses of a reload. Call it before
// Start.
func (s *Server) SetListeners(l Listeners) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = l
}

// listen gets vs its listener (from vs.listeners when set) and adopts it.
func (vs *VirtualServer) listen(ctx context.Context) error {
	bind := func(ctx context.Context) (*net.TCPListener, error) {
		return sockopt.Listen(ctx, vs.client, vs.cfg.Listen)
	}
	var (
		ln        *net.TCPListener
		inherited bool
		err       error
	)
	if vs.listeners == nil {
		ln, err = bind(ctx)
	} else {
		ln, inherited, err = vs.listeners.Listen(ctx, vs.cfg.Name, vs.cfg.Listen, bind)
	}
	if err != nil {
		return fmt.Errorf("virtual_server %q: listen %s: %w", vs.cfg.Name, vs.cfg.Listen, err)
	}
	if inherited {
		// The same socket as before: options the new client profile
		// sets on a listener are put in force, as a reload does.
		if err := sockopt.Reapply(ln, vs.client); err != nil {
			vs.logger.Warn("listener options of the client profile not applied to the received listener", zap.Error(err))
		}
		vs.logger.Info("listener received, not bound", zap.Stringer("address", ln.Addr()))
	}
	vs.adopt(ln)
	return nil
}

// closeListener stops the accept loop and closes vs's listener (unless it
// was handed over to a successor). With forGood, vs.listeners is told
// first (Release): the socket is not to live on elsewhere. Idle keepalive
// conns are not let go here: see letIdleGo.
func (vs *VirtualServer) closeListener(forGood bool) {
	if vs.ln == nil {
		return
	}
	vs.stopAccept()
	if vs.handedOver {
		return // the listener is the successor's; the accept loop ended
	}
	if forGood && vs.listeners != nil {
		if vs.acceptDone != nil {
			// Wake a blocked Accept without closing: Release may need
			// the socket open.
			_ = vs.ln.SetDeadline(time.Unix(1, 0))
			<-vs.acceptDone
		}
		vs.listeners.Release(vs.cfg.Listen, vs.ln)
	}
	_ = vs.ln.Close()
	if vs.acceptDone != nil { // nil when Start failed before serving
		<-vs.acceptDone
	}
}

// letIdleGo ends the wait of vs's idle client conns (http mode): a conn
// waiting for its next request, whose client sent nothing, is closed; one
// whose request already reached tether is served (with Connection:
// close). Until it is called after the accept loop stopped, idle conns
// wait as usual and their next request is answered with Connection: close
// (ShutdownGently).
func (vs *VirtualServer) letIdleGo() {
	if vs.releaseIdle != nil {
		vs.releaseIdle()
	}
}

// ShutdownGently is Shutdown for a process whose listeners a new process
// took over (a hot upgrade): it stops accepting here, and lets open
// connections finish until ctx is done, then ends the rest, as Shutdown
// does, but it does not close idle keepalive client conns at once. Closing
// an idle keepalive conn races the client's next request, which may be on
// its way (the client then sees a reset or an EOF instead of an answer,
// and a client that does not retry fails it). Instead each such conn
// keeps waiting: its next request is served with Connection: close, so
// the client opens its next conn to the new process. Those still idle
// after the virtual server's keepalive_timeout, or when ctx is done if
// that comes first, are closed as Shutdown closes them.
func (s *Server) ShutdownGently(ctx context.Context) error {
	return s.shutdown(ctx, true, 0)
}

// ShutdownGentlyFor is ShutdownGently with idle keepalive client conns
// kept at most grace: for a process that stops with no successor on its
// port (SIGTERM), where only the requests already on their way are worth
// waiting for. A conn accepted a moment before the stop whose first request
// is still in flight (a client behind a SO_REUSEPORT sibling, a rolling
// update's last connections), or a keepalive client's next request sent
// as the stop began, is answered with Connection: close instead of meeting
// a close it would report as a failure.
func (s *Server) ShutdownGentlyFor(ctx context.Context, grace time.Duration) error {
	return s.shutdown(ctx, true, grace)
}

// idleGrace is how long ShutdownGently lets vs's idle keepalive conns
// wait for their next request: keepalive_timeout (the wait a client may
// expect), cut to what is left of ctx.
func (vs *VirtualServer) idleGrace(ctx context.Context) time.Duration {
	grace := vs.http.cfg.KeepaliveTimeout
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl))
	}
	return grace
}
