package admin

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt"
)

// ReloadStatus reports the last config reload: whether it succeeded and
// when the last successful one (or the start) was.
type ReloadStatus func() (ok bool, at time.Time)

// MetricsHandler serves s's metrics in the Prometheus text format from a
// registry of its own (the Go and process collectors, and tether's). Every
// tether_ value is read at scrape time from what tether already keeps:
//
//   - tether_connections_active / tether_connections_total {virtual_server,side}:
//     side "client" from VirtualServer.Stats; side "server": in tcp mode
//     the member conns relaying (Stats), in http mode only the total, the
//     member conns its reuse pool opened (a pool's conns are shared by the
//     virtual server's clients: see tether_pool_connections).
//   - tether_requests_total{virtual_server,code} (code "1xx".."5xx") and the
//     tether_request_duration_seconds{virtual_server} histogram (http mode).
//   - tether_tls_handshakes_total{virtual_server,resumed}, with TLS.
//   - tether_member_up{pool,member}, tether_member_state{pool,member,state}.
//   - tether_pool_connections{pool,member,state="idle|active"},
//     tether_pool_connections_opened_total, tether_pool_reused_total,
//     tether_pool_stale_total, tether_pool_replays_total{cause},
//     tether_pool_retired_total{reason} {pool,member}: connections opened,
//     reused ... summed over the pool's reuse ConnPools (one per http
//     virtual server); opened counts the member's successful dials, and
//     the tether_connect_duration_seconds{pool,member} histogram times them.
//   - tether_tcp_sockets{virtual_server,side,state}: a sock_diag census, all
//     eleven TCP states; client side: local address = the listen address,
//     server side: remote address = a member of its pool (virtual servers
//     sharing a pool count the same server sockets). Taken within 1 s; when
//     it fails or times out the family is left out of that scrape and
//     tether_scrape_errors_total counts it.
//   - tether_config_last_reload_successful and
//     tether_config_last_reload_success_timestamp_seconds, when reload is
//     not nil.
func MetricsHandler(s *proxy.Server, reload ReloadStatus) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(s, reload),
	)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	// The admin API answers while the listeners bind; the proxy's figures
	// are read only once Start has bound them all.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.Started() {
			http.Error(w, "tether is starting: its listeners are not bound yet", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

var (
	descConnActive      = desc("connections_active", "Client (side=client) or member (side=server) connections open now.", "virtual_server", "side")
	descConnTotal       = desc("connections_total", "Client connections accepted (side=client) or member connections opened (side=server).", "virtual_server", "side")
	descRequests        = desc("requests_total", "HTTP requests answered, by status class.", "virtual_server", "code")
	descReqDuration     = desc("request_duration_seconds", "Time from a request's first byte to its end.", "virtual_server")
	descTLS             = desc("tls_handshakes_total", "Client TLS handshakes completed, resumed or not.", "virtual_server", "resumed")
	descMemberUp        = desc("member_up", "1 if the member gets new connections (enabled and healthy).", "pool", "member")
	descMemberState     = desc("member_state", "1 for the member's current state, 0 for the others.", "pool", "member", "state")
	descPoolConns       = desc("pool_connections", "Member connections idle in a pool, or in use (dials in flight included).", "pool", "member", "state")
	descPoolOpened      = desc("pool_connections_opened_total", "Connections dialed to the member (client, preconnect and reuse dials).", "pool", "member")
	descConnectDuration = desc("connect_duration_seconds", "Time a successful dial to the member took (TCP connect, and the TLS handshake for a TLS pool).", "pool", "member")
	descPoolReused      = desc("pool_reused_total", "Requests served on an idle or handed-over member connection.", "pool", "member")
	descPoolStale       = desc("pool_stale_total", "Idle member connections found closed or stale before use.", "pool", "member")
	descPoolReplays     = desc("pool_replays_total", "Requests replayed on another connection after this member's failed.", "pool", "member", "cause")
	descPoolRetired     = desc("pool_retired_total", "Member connections retired by tether, by reason.", "pool", "member", "reason")
	descTCPSockets      = desc("tcp_sockets", "TCP sockets by state (sock_diag census at scrape time).", "virtual_server", "side", "state")
	descScrapeErrors    = desc("scrape_errors_total", "Metric families left out of a scrape because reading them failed.", "family")
	descReloadOK        = desc("config_last_reload_successful", "1 if the last config reload succeeded.")
	descReloadAt        = desc("config_last_reload_success_timestamp_seconds", "Unix time of the last successful config reload.")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("tether_"+name, help, labels, nil)
}

// collector reads tether's counters at scrape time.
type collector struct {
	srv          *proxy.Server
	reload       ReloadStatus
	censusErrors atomic.Uint64
}

func newCollector(s *proxy.Server, reload ReloadStatus) *collector {
	return &collector{srv: s, reload: reload}
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnActive, descConnTotal, descRequests, descReqDuration, descTLS,
		descMemberUp, descMemberState, descPoolConns, descPoolOpened, descConnectDuration, descPoolReused, descPoolStale,
		descPoolReplays, descPoolRetired, descTCPSockets, descScrapeErrors, descReloadOK, descReloadAt} {
		ch <- d
	}
}

// Collect reads the current values.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	vss := c.srv.VirtualServers()
	for _, vs := range vss {
		c.collectVirtualServer(ch, vs)
	}
	for _, p := range c.srv.Pools() {
		collectPool(ch, p, vss)
	}
	c.collectSockets(ch, vss)
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.CounterValue, float64(c.censusErrors.Load()), "tcp_sockets")
	if c.reload != nil {
		ok, at := c.reload()
		ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, b2f(ok))
		ch <- prometheus.MustNewConstMetric(descReloadAt, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
	}
}

func (c *collector) collectVirtualServer(ch chan<- prometheus.Metric, vs *proxy.VirtualServer) {
	name := vs.Name()
	st := vs.Stats()
	ch <- prometheus.MustNewConstMetric(descConnActive, prometheus.GaugeValue, float64(st.Active), name, "client")
	ch <- prometheus.MustNewConstMetric(descConnTotal, prometheus.CounterValue, float64(st.Accepted), name, "client")
	if vs.Mode() == config.ModeTCP {
		ch <- prometheus.MustNewConstMetric(descConnActive, prometheus.GaugeValue, float64(st.ServerActive), name, "server")
		ch <- prometheus.MustNewConstMetric(descConnTotal, prometheus.CounterValue, float64(st.ServerOpened), name, "server")
	}
	if rs := vs.ReuseStats(); rs != nil {
		var opened uint64
		for _, r := range rs {
			opened += r.Opened
		}
		ch <- prometheus.MustNewConstMetric(descConnTotal, prometheus.CounterValue, float64(opened), name, "server")
		rq := vs.RequestStats()
		for i, n := range rq.ByClass {
			ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), name, strconv.Itoa(i+1)+"xx")
		}
		ch <- histogram(descReqDuration, pool.Durations{Bounds: rq.Bounds, Buckets: rq.Buckets, Count: rq.Count, Sum: rq.Sum}, name)
	}
	if vs.TLS() {
		ts := vs.TLSStats()
		ch <- prometheus.MustNewConstMetric(descTLS, prometheus.CounterValue, float64(ts.Handshakes-ts.Resumed), name, "false")
		ch <- prometheus.MustNewConstMetric(descTLS, prometheus.CounterValue, float64(ts.Resumed), name, "true")
	}
}

// memberStates lists every MemberState, so that tether_member_state follows
// the states pool defines.
func memberStates() []pool.MemberState {
	var states []pool.MemberState
	for s := pool.MemberState(0); s.String() != "unknown"; s++ {
		states = append(states, s)
	}
	return states
}

func collectPool(ch chan<- prometheus.Metric, p *pool.Pool, vss []*proxy.VirtualServer) {
	name := p.Name()
	states := memberStates()
	reuse := make([]pool.ReuseStats, len(p.Members()))
	for _, vs := range vss {
		if vs.PoolName() != name {
			continue
		}
		for i, r := range vs.ReuseStats() {
			if i < len(reuse) {
				addReuse(&reuse[i], r)
			}
		}
	}
	for i, ms := range p.Stats() {
		m, r := ms.Address, reuse[i]
		ch <- prometheus.MustNewConstMetric(descMemberUp, prometheus.GaugeValue, b2f(ms.State == pool.Up), name, m)
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(descMemberState, prometheus.GaugeValue, b2f(ms.State == s), name, m, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(ms.Idle), name, m, "idle")
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(ms.Active-ms.Idle), name, m, "active")
		ch <- prometheus.MustNewConstMetric(descPoolOpened, prometheus.CounterValue, float64(ms.Connects), name, m)
		ch <- histogram(descConnectDuration, p.Members()[i].ConnectDurations(), name, m)
		ch <- prometheus.MustNewConstMetric(descPoolReused, prometheus.CounterValue, float64(r.Reused+ms.PreconnectHits), name, m)
		ch <- prometheus.MustNewConstMetric(descPoolStale, prometheus.CounterValue, float64(r.StaleOnPeek+ms.StaleDropped), name, m)
		ch <- prometheus.MustNewConstMetric(descPoolReplays, prometheus.CounterValue, float64(r.ReplaysHeadUnsent), name, m, pool.ReplayHeadUnsent.String())
		ch <- prometheus.MustNewConstMetric(descPoolReplays, prometheus.CounterValue, float64(r.ReplaysNoResponse), name, m, pool.ReplayNoResponse.String())
		for _, rr := range []struct {
			reason string
			n      uint64
		}{
			{"retired", r.Retired}, {"idle_expired", r.ExpiredIdle}, {"closed_early", r.ClosedEarly},
			{"discarded", r.Discarded}, {"idle_overflow", r.IdleOverflow},
		} {
			ch <- prometheus.MustNewConstMetric(descPoolRetired, prometheus.CounterValue, float64(rr.n), name, m, rr.reason)
		}
	}
}

// addReuse adds r's counters into sum.
func addReuse(sum *pool.ReuseStats, r pool.ReuseStats) {
	sum.Reused += r.Reused
	sum.StaleOnPeek += r.StaleOnPeek
	sum.ReplaysHeadUnsent += r.ReplaysHeadUnsent
	sum.ReplaysNoResponse += r.ReplaysNoResponse
	sum.Retired += r.Retired
	sum.ExpiredIdle += r.ExpiredIdle
	sum.ClosedEarly += r.ClosedEarly
	sum.Discarded += r.Discarded
	sum.IdleOverflow += r.IdleOverflow
}

// histogram makes a Prometheus histogram in seconds of d.
func histogram(desc *prometheus.Desc, d pool.Durations, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(d.Bounds))
	for i, b := range d.Bounds {
		buckets[b.Seconds()] = d.Buckets[i]
	}
	return prometheus.MustNewConstHistogram(desc, d.Count, d.Sum.Seconds(), buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) collectSockets(ch chan<- prometheus.Metric, vss []*proxy.VirtualServer) {
	counts, ok := takeCensus(c.srv, vss)
	if !ok {
		c.censusErrors.Add(1)
		return
	}
	states := sockopt.States()
	for i, vs := range vss {
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(descTCPSockets, prometheus.GaugeValue, float64(counts[i].Client[st]), vs.Name(), "client", st.String())
			ch <- prometheus.MustNewConstMetric(descTCPSockets, prometheus.GaugeValue, float64(counts[i].Server[st]), vs.Name(), "server", st.String())
		}
	}
}
