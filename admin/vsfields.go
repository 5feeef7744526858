package admin

import (
	"strconv"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
)

// The fields /api/v1/virtual-servers gained for the dashboard, added to
// vsBody without changing the others:
//
//   - "sockets": the sock_diag census, each side, all eleven TCP states
//     (socketsBody); null when the census failed or took over censusTimeout.
//   - "requests" (http mode): requests answered since start, in all and by
//     status class, as tether_requests_total counts them.
//   - "pool_reuse" (http mode): over every member of the pool, the member
//     conns the virtual server's reuse pool opened and the requests it
//     served on a reused conn (pool.ReuseStats Opened and Reused), from
//     which the dashboard shows reused / (reused + opened).
//
// Counters are since start; rates are the client's to compute from deltas.

// requestsBody counts a virtual server's requests.
type requestsBody struct {
	Total   uint64            `json:"total"`
	ByClass map[string]uint64 `json:"by_class"` // "1xx" ... "5xx"
}

// reuseBody is a virtual server's reuse pool summed over its members.
type reuseBody struct {
	Opened uint64 `json:"opened"`
	Reused uint64 `json:"reused"`
}

// vsCounters reads the http-mode counters of vs (both nil in tcp mode).
func vsCounters(vs *proxy.VirtualServer) (*requestsBody, *reuseBody) {
	if vs.Mode() != config.ModeHTTP {
		return nil, nil
	}
	reuse := &reuseBody{}
	for _, r := range vs.ReuseStats() {
		reuse.Opened += r.Opened
		reuse.Reused += r.Reused
	}
	rq := vs.RequestStats()
	req := &requestsBody{ByClass: make(map[string]uint64, len(rq.ByClass))}
	for i, n := range rq.ByClass {
		req.ByClass[strconv.Itoa(i+1)+"xx"] = n
		req.Total += n
	}
	return req, reuse
}
