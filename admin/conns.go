package admin

import (
	"net/http"
	"strconv"

	"github.com/tetherproxy/tether/proxy"
)

// GET /api/v1/connections?virtual_server=NAME&limit=N: the virtual
// server's live proxied client conns, oldest first, each with the member
// conn attached to it now (null when none) and what TCP_INFO says of both
// sockets. The CLI and the dashboard read this shape; keep it.

const (
	defaultConnLimit = 100
	maxConnLimit     = 10000
)

type connsBody struct {
	VirtualServer string `json:"virtual_server"`
	// Count is every live conn of the virtual server; Truncated says the
	// list stopped at the limit before them all.
	Count       int        `json:"count"`
	Truncated   bool       `json:"truncated"`
	Connections []connBody `json:"connections"`
}

type connBody struct {
	ID         uint64      `json:"id"`
	AgeSeconds float64     `json:"age_seconds"`
	Client     socketBody  `json:"client"`
	Server     *socketBody `json:"server"` // null: no member conn attached now
}

// socketBody is one socket. The byte counts are the kernel's (TCP_INFO),
// for both modes: bytes_in is tcpi_bytes_received, bytes_out
// tcpi_bytes_acked (sent and acknowledged; the kernel counts a SYN it
// sent, and a FIN, as one byte each). A shared member conn's counts cover
// its whole life, across clients.
type socketBody struct {
	Local       string  `json:"local"`
	Remote      string  `json:"remote"`
	State       string  `json:"state"`
	RTTSeconds  float64 `json:"rtt_seconds"`
	Retransmits uint32  `json:"retransmits"` // over the socket's life (tcpi_total_retrans)
	Cwnd        uint32  `json:"cwnd"`        // segments
	Unacked     uint32  `json:"unacked"`     // segments in flight
	BytesIn     uint64  `json:"bytes_in"`
	BytesOut    uint64  `json:"bytes_out"`
}

func (a *Admin) connections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("virtual_server")
	if name == "" {
		writeError(w, http.StatusBadRequest, "missing query parameter virtual_server")
		return
	}
	limit := defaultConnLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxConnLimit {
			writeError(w, http.StatusBadRequest, "bad limit "+quote(q.Get("limit"))+": want a whole number from 1 to "+strconv.Itoa(maxConnLimit))
			return
		}
		limit = n
	}
	vs := a.opts.Server.VirtualServer(name)
	if vs == nil {
		writeError(w, http.StatusNotFound, "no virtual server "+quote(name))
		return
	}
	total, conns := vs.Connections(limit)
	out := connsBody{VirtualServer: name, Count: total, Truncated: len(conns) < total, Connections: make([]connBody, 0, len(conns))}
	for _, c := range conns {
		cb := connBody{ID: c.ID, AgeSeconds: c.Age.Seconds(), Client: socket(c.Client)}
		if c.Server != nil {
			s := socket(*c.Server)
			cb.Server = &s
		}
		out.Connections = append(out.Connections, cb)
	}
	writeJSON(w, http.StatusOK, out)
}

func socket(s proxy.SocketInfo) socketBody {
	return socketBody{
		Local: s.Local.String(), Remote: s.Remote.String(), State: s.State.String(),
		RTTSeconds: s.RTT.Seconds(), Retransmits: s.TotalRetrans, Cwnd: s.Cwnd, Unacked: s.Unacked,
		BytesIn: s.BytesReceived, BytesOut: s.BytesAcked,
	}
}
