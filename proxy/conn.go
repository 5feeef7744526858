package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/sockopt"
)

// handle serves one client connection: it owns c until the relay's last
// goroutine closes it. handle itself returns once the relay runs, so that
// the deeper stack of the connect path is not kept for the connection's
// life: an idle proxied connection costs two small goroutines, nothing else
// on the Go side (no buffer, no splice pipe).
func (vs *VirtualServer) handle(c *net.TCPConn) {
	start := time.Now()
	vs.applyClient(c)
	var tc *tls.Conn
	var ti *tlsInfo
	if vs.tls != nil {
		var ok bool
		if tc, ti, ok = vs.terminateTLS(c); !ok {
			return
		}
	}
	if vs.http != nil {
		vs.serveHTTP(c, tc, ti) // returns once the conn ended, parked or went to a tunnel (httpConn.live)
		return
	}
	vs.relayTCP(c, tc, ti, start)
}

// terminateTLS runs the client's TLS handshake; when it fails the conn is
// closed and freed, and ok is false.
func (vs *VirtualServer) terminateTLS(c *net.TCPConn) (*tls.Conn, *tlsInfo, bool) {
	tc, info, timedOut, ok := vs.handshake(c)
	if !ok {
		vs.closeRefused(c, timedOut)
		vs.connDone()
		return nil, nil, false
	}
	return tc, &info, true
}

// applyClient finishes the client profile on an accepted conn: it inherited
// every option from the listener, which Listen or a reload's Reapply set,
// but Go forced TCP_NODELAY on.
func (vs *VirtualServer) applyClient(c *net.TCPConn) {
	if err := sockopt.Finish(c, &vs.client); err != nil {
		// The listener took the same options at Start, so a failure here
		// means this socket already died (reset right after connecting).
		if ce := vs.logger.Check(zapcore.DebugLevel, "client socket options not applied"); ce != nil {
			ce.Write(zap.Error(err), zap.Stringer("client", c.RemoteAddr()))
		}
	}
}

// relayTCP connects a tcp-mode client conn to a member and starts the
// relay. It is handle's tcp half, kept out of handle so that handle's
// frame stays small: an http-mode conn waits for its next request under
// handle, and a small stack there lets the runtime shrink the goroutine's
// stack while it idles (4 KiB less per idle keepalive conn).
func (vs *VirtualServer) relayTCP(c *net.TCPConn, tc *tls.Conn, ti *tlsInfo, start time.Time) {
	// The connect is cut short by shutdown's deadline like any relay.
	ctx, cancel := context.WithCancel(vs.cutCtx)
	sc, err := vs.dialer.Connect(ctx, c.RemoteAddr())
	cancel()
	if err != nil {
		// No member can take it: reset the client at once (no TIME_WAIT on
		// tether, and the client learns now instead of on its first read).
		_ = sockopt.Close(c, config.CloseReset, 0)
		vs.logError("no member could take the connection; client reset",
			zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
		if vs.accessLog {
			ev := closeEvent{SideTether, HowError}
			vs.logAccess(c.RemoteAddr(), nil, nil, ti, start, ev, ev, sockopt.Info{}, sockopt.Info{}, err)
		}
		vs.connDone()
		return
	}

	vs.n.serverOpened.Add(1)
	vs.n.serverActive.Add(1)
	r := newRelay(c, tc, sc.TCP, sc.TLS, vs.idle, vs.halfClose, vs.parker)
	r.member = sc.Member
	// Shutdown's cut aborts every tracked relay (no context.AfterFunc per
	// conn); one that starts after the cut aborts itself.
	vs.relays.add(r)
	vs.live.add(r, start)
	if vs.cutCtx.Err() != nil {
		r.abort(closeEvent{SideTether, HowShutdown})
	}
	r.start(func(first, end closeEvent) {
		vs.relays.remove(r)
		vs.live.remove(r)
		vs.finish(c, sc, r, ti, start, first, end)
	})
}

// finish runs on the relay's last goroutine once both directions ended:
// it closes both sides, writes the access line and frees the slot.
func (vs *VirtualServer) finish(c *net.TCPConn, sc *pool.Conn, r *relay, ti *tlsInfo, start time.Time, first, end closeEvent) {
	var ci, si sockopt.Info
	if vs.accessLog {
		ci, _ = sockopt.GetInfo(c)
		si, _ = sockopt.GetInfo(sc.TCP)
	}
	vs.closeBoth(c, sc.TCP, end)
	vs.n.serverActive.Add(-1)
	sc.Release()
	if vs.accessLog {
		vs.logAccess(c.RemoteAddr(), sc, r, ti, start, first, end, ci, si, nil)
	}
	vs.connDone()
}

// connDone frees a client connection's slot; the last thing done for it.
func (vs *VirtualServer) connDone() {
	vs.n.active.Add(-1)
	vs.releaseSlot()
	vs.conns.Done()
}

// closeBoth closes each side with its profile's close mode; end is what cut
// the connection (zero after FIN both ways). A side that reset is simply
// closed; after a timeout, a profile with reset_on_timeout resets. When
// both sides drain before their reset, the two closes run at once so that
// the waits do not add up; otherwise neither close waits, and they run in
// turn without a goroutine.
func (vs *VirtualServer) closeBoth(client, server *net.TCPConn, ev closeEvent) {
	cm, sm := closeMode(&vs.client, SideClient, ev), closeMode(&vs.server, SideServer, ev)
	if cm != config.CloseDrainReset || sm != config.CloseDrainReset {
		_ = sockopt.Close(server, sm, vs.server.DrainTimeout)
		_ = sockopt.Close(client, cm, vs.client.DrainTimeout)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sockopt.Close(server, sm, vs.server.DrainTimeout)
	}()
	_ = sockopt.Close(client, cm, vs.client.DrainTimeout)
	<-done
}

// closeMode is how side closes after ev: its profile's mode, except that a
// side the peer reset is simply closed, and a timeout resets when the
// profile has reset_on_timeout.
func closeMode(p *config.TCPProfile, side Side, ev closeEvent) config.CloseMode {
	switch {
	case ev.How == HowRST && ev.Side == side:
		return config.CloseGraceful // already reset by the peer: nothing to send
	case (ev.How == HowIdleTimeout || ev.How == HowHalfCloseTimeout) && p.ResetOnTimeout:
		return config.CloseReset
	}
	return p.Close
}

func (vs *VirtualServer) logAccess(client net.Addr, sc *pool.Conn, r *relay, ti *tlsInfo, start time.Time, first, end closeEvent, ci, si sockopt.Info, err error) {
	ce := vs.logger.Check(zapcore.InfoLevel, "connection")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("log", "access"),
		zap.Stringer("client", client),
		zap.Duration("duration", time.Since(start)),
		zap.String("closed_first", first.String()),
		zap.String("closed_by", closedBy(end)),
	}
	if sc != nil {
		fields = append(fields,
			zap.String("member", sc.Member.Address()),
			zap.Bool("preconnected", sc.Preconnected),
			zap.Duration("connect_time", sc.ConnectTime),
		)
	}
	if r != nil {
		fields = append(fields,
			zap.Int64("bytes_in", r.toServer.Load()),
			zap.Int64("bytes_out", r.toClient.Load()),
			zap.Duration("client_rtt", ci.RTT),
			zap.Uint32("client_retransmits", ci.TotalRetrans),
			zap.Duration("server_rtt", si.RTT),
			zap.Uint32("server_retransmits", si.TotalRetrans),
		)
	}
	if ti != nil {
		fields = ti.appendFields(fields)
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
		if errors.Is(err, pool.ErrNoMember) {
			fields = append(fields, zap.String("reason", "no member available"))
		}
	}
	ce.Write(fields...)
}

// closedBy names what ended a connection for the access log.
func closedBy(end closeEvent) string {
	if end.Side == "" {
		return "FIN both ways"
	}
	return end.String()
}
