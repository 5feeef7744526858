package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs"
	"github.com/tetherproxy/tether/sockopt"
)

// tlsSide is a virtual server's TLS termination (F5's client SSL profile).
type tlsSide struct {
	certs   *certs.Manager
	conf    *tls.Config
	timeout time.Duration
	// onDemand: a handshake may wait for an ACME order (certmagic takes
	// the handshake's context), so it runs under a context bounded by the
	// timeout, not only under a conn deadline.
	onDemand bool

	handshakes atomic.Uint64 // completed
	resumed    atomic.Uint64 // of those, resumed from a session ticket
	failed     atomic.Uint64 // handshakes that failed or timed out
	silent     atomic.Uint64 // clients that closed before sending a byte
	challenges atomic.Uint64 // ACME tls-alpn-01 challenges answered
	failLog    logLimit      // handshake failures: once a second
}

func newTLSSide(c config.TLS, logger *zap.Logger) (*tlsSide, error) {
	m, err := certs.New(c, logger)
	if err != nil {
		return nil, err
	}
	return &tlsSide{certs: m, conf: m.TLSConfig(), timeout: c.HandshakeTimeout,
		onDemand: c.ACME != nil && c.ACME.OnDemand, failLog: logLimit{interval: time.Second}}, nil
}

// TLSStats is a snapshot of a virtual server's TLS counters.
type TLSStats struct {
	Handshakes uint64 // completed client handshakes
	Resumed    uint64 // of those, resumed sessions
	Failed     uint64 // failed or timed-out client handshakes
	// Silent counts clients that connected and closed without sending a
	// byte (TCP health checks, port probes, certmagic's own port check):
	// not handshake failures, and not logged above debug.
	Silent     uint64
	Challenges uint64 // ACME tls-alpn-01 challenge handshakes answered
}

// TLSStats returns the virtual server's TLS counters (zero without TLS).
func (vs *VirtualServer) TLSStats() TLSStats {
	if vs.tls == nil {
		return TLSStats{}
	}
	return TLSStats{Handshakes: vs.tls.handshakes.Load(), Resumed: vs.tls.resumed.Load(), Failed: vs.tls.failed.Load(),
		Silent: vs.tls.silent.Load(), Challenges: vs.tls.challenges.Load()}
}

// tlsInfo is what the access log says of a client's TLS.
type tlsInfo struct {
	version   uint16
	cipher    uint16
	sni       string
	alpn      string
	handshake time.Duration
	resumed   bool
}

func (ti *tlsInfo) appendFields(fields []zap.Field) []zap.Field {
	return append(fields,
		zap.String("tls_version", tls.VersionName(ti.version)),
		zap.String("tls_cipher", tls.CipherSuiteName(ti.cipher)),
		zap.String("sni", ti.sni),
		zap.String("alpn", ti.alpn),
		zap.Duration("tls_handshake", ti.handshake),
		zap.Bool("tls_resumed", ti.resumed),
	)
}

// handshake terminates TLS on a client conn, bounded by the handshake
// timeout and cut by shutdown. It returns false when the conn must close:
// the handshake failed (logged at warn, rate-limited: garbage is expected
// on an open port), or it answered an ACME tls-alpn-01 challenge. timedOut
// says the client stalled it.
func (vs *VirtualServer) handshake(c *net.TCPConn) (tc *tls.Conn, ti tlsInfo, timedOut, ok bool) {
	ts := vs.tls
	start := time.Now()
	tc = tls.Server(c, ts.conf)
	if ts.timeout > 0 {
		_ = c.SetDeadline(start.Add(ts.timeout))
	}
	var err error
	if ts.onDemand {
		ctx, cancel := context.WithTimeout(vs.cutCtx, ts.timeout)
		err = tc.HandshakeContext(ctx)
		cancel()
	} else {
		// No context: HandshakeContext costs a goroutine per handshake.
		stop := context.AfterFunc(vs.cutCtx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		err = tc.Handshake()
		stop()
	}
	if err != nil {
		if err == io.EOF { // closed before a byte of ClientHello
			ts.silent.Add(1)
			if ce := vs.logger.Check(zap.DebugLevel, "client closed before its TLS handshake"); ce != nil {
				ce.Write(zap.Stringer("client", c.RemoteAddr()))
			}
			return nil, ti, false, false
		}
		if vs.cutCtx.Err() != nil {
			return nil, ti, false, false // cut by shutdown: not the client's failure
		}
		ts.failed.Add(1)
		timedOut = errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
		vs.refuseTLS(c, err, timedOut)
		return nil, ti, timedOut, false
	}
	_ = c.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	if certs.IsChallenge(cs) {
		ts.challenges.Add(1)
		if ce := vs.logger.Check(zap.InfoLevel, "ACME tls-alpn-01 challenge answered"); ce != nil {
			ce.Write(zap.String("name", cs.ServerName), zap.Stringer("client", c.RemoteAddr()))
		}
		return nil, ti, false, false // certmagic answered the CA's challenge in the handshake
	}
	ts.handshakes.Add(1)
	if cs.DidResume {
		ts.resumed.Add(1)
	}
	return tc, tlsInfo{
		version: cs.Version, cipher: cs.CipherSuite, sni: cs.ServerName,
		alpn: cs.NegotiatedProtocol, handshake: time.Since(start), resumed: cs.DidResume,
	}, false, true
}

// plainHTTPOnTLS is the answer to a plain HTTP request on a TLS port in
// http mode (net/http says the same).
var plainHTTPOnTLS = []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 48\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")

// refuseTLS logs a failed client handshake (warn, at most once per second
// per virtual server) and, in http mode, answers a plain HTTP request with
// 400 instead of the unreadable TLS alert.
func (vs *VirtualServer) refuseTLS(c *net.TCPConn, err error, timedOut bool) {
	var rh tls.RecordHeaderError
	plainHTTP := errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader[:])
	if plainHTTP && vs.http != nil {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(plainHTTPOnTLS)
	}
	ts := vs.tls
	ok, suppressed := ts.failLog.allow(time.Now())
	if !ok {
		return
	}
	fields := []zap.Field{zap.Stringer("client", c.RemoteAddr()), zap.Error(err)}
	switch {
	case plainHTTP:
		fields = append(fields, zap.String("reason", "plain HTTP on a TLS port"))
	case timedOut:
		fields = append(fields, zap.String("reason", "handshake timeout"), zap.Duration("handshake_timeout", ts.timeout))
	}
	if suppressed > 0 {
		fields = append(fields, zap.Uint64("suppressed_since_last", suppressed))
	}
	vs.logger.Warn("TLS handshake failed", fields...)
}

// looksLikeHTTP reports whether the first bytes of a "TLS record" are an
// HTTP method.
func looksLikeHTTP(hdr []byte) bool {
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "DELET", "OPTIO", "PATCH", "CONNE", "TRACE"} {
		if bytes.HasPrefix([]byte(m), hdr) || bytes.HasPrefix(hdr, []byte(m)) {
			return true
		}
	}
	return false
}

// closeRefused closes a client conn whose handshake failed: reset after a
// timeout when the profile says so, else the profile's close mode.
func (vs *VirtualServer) closeRefused(c *net.TCPConn, timedOut bool) {
	mode := vs.client.Close
	if timedOut && vs.client.ResetOnTimeout {
		mode = config.CloseReset
	}
	_ = sockopt.Close(c, mode, vs.client.DrainTimeout)
}

// HasTLS reports whether the virtual server terminates TLS.
func (vs *VirtualServer) HasTLS() bool { return vs.tls != nil }
