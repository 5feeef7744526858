package proxy

import (
	"bytes"
	"sort"
	"sync/atomic"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/http1"
)

// httpSide is what an http-mode virtual server adds to a tcp one: the
// client-side HTTP settings and the reuse ConnPool its requests borrow member
// connections from.
type httpSide struct {
	cfg    config.HTTP
	mode   string // config.ReuseShared | ReusePerClient | ReuseNever
	reuser *pool.ConnPool
	reuse  config.Reuse // the pool's settings reuser was built with
	limits http1.Limits

	// Configured header edits: names removed (any case), fields added.
	// An added name is removed first, so adding replaces.
	reqRemove, respRemove [][]byte
	reqAdd, respAdd       []http1.Header
	// hstsLine is the Strict-Transport-Security field line ("Name:
	// value\r\n") tether's own error responses carry; nil without
	// [tls.hsts]. Relayed responses get it through respRemove/respAdd.
	hstsLine []byte

	// busy counts client conns holding request buffers: a request in
	// progress (idle keepalive conns hold none); reqs counts requests by
	// status class and duration. Both are the virtual server's counters
	// (vsCounters), kept over reloads.
	busy *atomic.Int64
	reqs *requestStats

	// conns are the client conns being served, for shutdown.
	conns liveSet[*httpConn]
}

// shutdown wakes the tracked conns at shutdown: with cut false the idle
// ones (waiting for a request; a busy one answers its current request with
// Connection: close and ends), with cut true all of them (the drain time is
// over).
func (hs *httpSide) shutdown(cut bool) {
	past := time.Unix(1, 0)
	hs.conns.each(func(h *httpConn) {
		switch {
		case cut:
			_ = h.clientTCP.SetDeadline(past)
		case h.waiting.Load():
			_ = h.clientTCP.SetReadDeadline(past)
		}
	})
}

// headerEdits turns a config's add/remove lists into codec fields, in a
// stable order.
func headerEdits(add map[string]string, remove []string) (rm [][]byte, ad []http1.Header) {
	for _, n := range remove {
		rm = append(rm, []byte(n))
	}
	names := make([]string, 0, len(add))
	for n := range add {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rm = append(rm, []byte(n))
		ad = append(ad, http1.Header{Name: []byte(n), Value: []byte(add[n])})
	}
	return rm, ad
}

// removeFields drops, in place, the fields whose names are in names.
func removeFields(hs []http1.Header, names [][]byte) []http1.Header {
	if len(names) == 0 {
		return hs
	}
	out := hs[:0]
	for _, f := range hs {
		drop := false
		for _, n := range names {
			if bytes.EqualFold(f.Name, n) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, f)
		}
	}
	return out
}

func newHTTPSide(vc config.VirtualServer, pc config.Pool, r *pool.ConnPool, n *vsCounters) *httpSide {
	hs := &httpSide{
		cfg:    *vc.HTTP,
		mode:   pc.Reuse.Mode,
		reuser: r,
		reuse:  pc.Reuse,
		busy:   &n.busy,
		reqs:   &n.reqs,
		limits: http1.Limits{MaxRequestLine: vc.HTTP.MaxRequestLine, MaxHeaderBytes: vc.HTTP.MaxHeaderBytes},
	}
	hs.reqRemove, hs.reqAdd = headerEdits(vc.HTTP.AddRequestHeaders, vc.HTTP.RemoveRequestHeaders)
	hs.respRemove, hs.respAdd = headerEdits(vc.HTTP.AddResponseHeaders, vc.HTTP.RemoveResponseHeaders)
	if vc.TLS != nil && vc.TLS.HSTS != nil {
		// Set, not added: a member's own field is removed first (a browser
		// reads only the first of several: RFC 6797 8.1). The field is
		// built once here, so the request path copies bytes and allocates
		// nothing.
		name, value := []byte(config.HSTSHeader), []byte(vc.TLS.HSTS.Value())
		hs.respRemove = append(hs.respRemove, name)
		hs.respAdd = append(hs.respAdd, http1.Header{Name: name, Value: value})
		hs.hstsLine = append(append(append(append([]byte(nil), name...), ": "...), value...), "\r\n"...)
	}
	return hs
}
