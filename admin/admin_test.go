package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestReadEndpointsDescribeTheRunningProxy(t *testing.T) {
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	e := startEnv(t, "", "shared", a.Addr(), b.Addr())
	cl := dialWeb(t, e)
	for range 4 {
		cl.get(t)
	}

	var health map[string]string
	if code := e.call(t, "GET", "/healthz", &health); code != 200 || health["status"] != "alive" {
		t.Errorf("/healthz: %d %v", code, health)
	}
	if code := e.call(t, "GET", "/ready", nil); code != 200 {
		t.Errorf("/ready: %d, want 200 once the listeners are bound", code)
	}

	var st statusBody
	if code := e.call(t, "GET", "/api/v1/status", &st); code != 200 || st.Version != "test" || !st.LastReload.OK || st.UptimeSeconds < 0 || st.LastReload.Problems == nil {
		t.Errorf("/api/v1/status: %d %+v", code, st)
	}

	var vss struct {
		VirtualServers []vsBody `json:"virtual_servers"`
	}
	if code := e.call(t, "GET", "/api/v1/virtual-servers", &vss); code != 200 || len(vss.VirtualServers) != 2 {
		t.Fatalf("/api/v1/virtual-servers: %d %+v", code, vss)
	}
	web := vss.VirtualServers[0]
	if web.Name != "web" || web.Mode != "http" || web.Addr != e.srv.ListenAddr("web").String() || web.Pool != "p" ||
		web.ClientProfile.Name != "tcp" || web.Connections.Accepted != 1 || web.Connections.Active != 1 {
		t.Errorf("web: %+v", web)
	}
	if raw := vss.VirtualServers[1]; raw.Name != "raw" || raw.Mode != "tcp" {
		t.Errorf("raw: %+v", raw)
	}

	ps := getPools(t, e)
	if len(ps) != 2 || ps[0].Name != "p" || len(ps[0].Members) != 2 || ps[1].Name != "q" {
		t.Fatalf("/api/v1/pools: %+v", ps)
	}
	var requests uint64
	for i, m := range ps[0].Members {
		if m.Address != []string{a.Addr(), b.Addr()}[i] || m.State != "up" || m.Admin != "enabled" || m.Health != "up" {
			t.Errorf("member %d: %+v", i, m)
		}
		r, ok := m.Reuse["web"]
		if !ok {
			t.Errorf("member %d: no reuse stats of virtual server web: %+v", i, m)
		}
		requests += r.Opened + r.Reused
		if m.Counters.Connects == 0 {
			t.Errorf("member %d: no connects counted: %+v", i, m.Counters)
		}
	}
	if requests != 4 {
		t.Errorf("reuse stats count %d member conn uses, want 4 requests", requests)
	}
	if ps[1].Members[0].Reuse != nil {
		t.Errorf("a tcp-mode pool shows reuse stats: %+v", ps[1].Members[0])
	}
}

func getPools(t *testing.T, e *env) []poolBody {
	t.Helper()
	var ps struct {
		Pools []poolBody `json:"pools"`
	}
	if code := e.call(t, "GET", "/api/v1/pools", &ps); code != 200 {
		t.Fatalf("/api/v1/pools: %d", code)
	}
	return ps.Pools
}

func TestReadyOnlyWhileTheListenersAreBoundAndNotShuttingDown(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[pool.p]
members = [{ address = "127.0.0.1:1" }]
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:0"
pool = "p"
`))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Listen: "127.0.0.1:0", Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer func() { _ = srv.Shutdown(ctx) }()
	defer func() { _ = a.Shutdown(ctx) }()
	e := &env{srv: srv, admin: a, base: "http://" + a.Addr().String()}
	var body apiError
	if code := e.call(t, "GET", "/ready", &body); code != http.StatusServiceUnavailable || body.Error == "" {
		t.Errorf("/ready before Start: %d %+v, want 503 with an error", code, body)
	}
	if code := e.call(t, "GET", "/healthz", nil); code != 200 {
		t.Errorf("/healthz before Start: %d, want 200 (alive)", code)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := e.call(t, "GET", "/ready", nil); code != 200 {
		t.Errorf("/ready after Start: %d", code)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	body = apiError{}
	if code := e.call(t, "GET", "/ready", &body); code != http.StatusServiceUnavailable || body.Error == "" {
		t.Errorf("/ready after Shutdown: %d %+v, want 503 with an error", code, body)
	}
	if code := e.call(t, "GET", "/healthz", nil); code != 200 {
		t.Errorf("/healthz while shutting down: %d, want 200 (alive)", code)
	}
}

func TestTokenIsRequiredOnEveryEndpointButTheProbes(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "s3cret", "shared", a.Addr())
	drain := "/api/v1/pools/p/members/" + a.Addr() + "/drain"
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/healthz", "", 200}, // probes need no token
		{"GET", "/ready", "", 200},
		{"HEAD", "/ready", "", 200},
		{"POST", "/ready", "", 401},
		{"GET", "/readyz", "", 401},
		{"GET", "/healthz/x", "", 401},
		{"GET", "/api/v1/pools", "", 401},
		{"GET", "/api/v1/pools", "Bearer wrong", 401},
		{"GET", "/api/v1/pools", "Bearer s3cret-and-more", 401},
		{"GET", "/api/v1/pools", "Basic s3cret", 401},
		{"GET", "/api/v1/pools", "s3cret", 401},
		{"POST", drain, "", 401},
		{"POST", drain, "Bearer wrong", 401},
		{"GET", "/healthz", "Bearer s3cret", 200},
		{"GET", "/api/v1/status", "Bearer s3cret", 200},
		{"GET", "/api/v1/pools", "Bearer s3cret", 200},
		{"POST", drain, "Bearer s3cret", 200},
	} {
		req, _ := http.NewRequest(tc.method, e.base+tc.path, nil)
		req.Header.Set("X-Tether", "1")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		var body apiError
		out := any(nil)
		if tc.want != 200 {
			out = &body
		}
		if code := do(t, req, out); code != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.auth, code, tc.want)
		} else if tc.want == 401 && body.Error == "" {
			t.Errorf("%s %s with %q: 401 without an error message", tc.method, tc.path, tc.auth)
		}
	}
	if st := e.srv.Pool("p").Members()[0].State(); st.String() != "draining" {
		t.Errorf("member state %v after the authorised drain", st)
	}
}

func TestNonLoopbackListenNeedsAToken(t *testing.T) {
	srv := &proxy.Server{}
	if _, err := New(Options{Listen: "0.0.0.0:0", Server: srv}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("New on 0.0.0.0 without a token: %v", err)
	}
	if _, err := New(Options{Listen: "0.0.0.0:0", Token: "t", Server: srv}); err != nil {
		t.Errorf("New on 0.0.0.0 with a token: %v", err)
	}
}

func TestChangesOnlyByPostWithXTether(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "", "shared", a.Addr())
	m := e.srv.Pool("p").Members()[0]
	disable := "/api/v1/pools/p/members/" + a.Addr() + "/disable"
	for _, tc := range []struct {
		method, path, xTether string
		want                  int
	}{
		{"POST", disable, "", 403},
		{"POST", disable, "0", 403},
		{"POST", disable, "true", 403},
		{"GET", disable, "", 405},
		{"PUT", disable, "1", 405},
		{"DELETE", "/api/v1/pools", "1", 405},
		{"POST", "/api/v1/pools", "1", 405},
		{"POST", "/api/v1/pools/nope/members/" + a.Addr() + "/disable", "1", 404},
		{"POST", "/api/v1/pools/p/members/127.0.0.1:1/disable", "1", 404},
		{"POST", "/api/v1/pools/p/members/" + a.Addr() + "/explode", "1", 404},
		{"GET", "/api/v1/nothing", "", 404},
	} {
		req, _ := http.NewRequest(tc.method, e.base+tc.path, nil)
		if tc.xTether != "" {
			req.Header.Set("X-Tether", tc.xTether)
		}
		var body apiError
		if code := do(t, req, &body); code != tc.want || body.Error == "" || body.Problems == nil {
			t.Errorf("%s %s X-Tether %q: %d %+v, want %d with a JSON error", tc.method, tc.path, tc.xTether, code, body, tc.want)
		}
		if m.AdminState().String() != "enabled" {
			t.Fatalf("%s %s X-Tether %q changed the member to %v", tc.method, tc.path, tc.xTether, m.AdminState())
		}
	}
	var ok map[string]string
	if code := e.call(t, "POST", disable, &ok); code != 200 || ok["admin"] != "disabled" || ok["previous"] != "enabled" || ok["state"] != "disabled" {
		t.Errorf("POST disable with X-Tether: %d %v", code, ok)
	}
}

func TestMetricsHandlerIsMountedWhenGiven(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "", "shared", a.Addr())
	if code := e.call(t, "GET", "/metrics", &apiError{}); code != 404 {
		t.Errorf("/metrics without a handler: %d, want 404", code)
	}
	b, err := New(Options{Listen: "127.0.0.1:0", Server: e.srv, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"metric":1}`))
	})})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Shutdown(context.Background()) }()
	var got map[string]int
	e2 := &env{srv: e.srv, base: "http://" + b.Addr().String()}
	if code := e2.call(t, "GET", "/metrics", &got); code != 200 || got["metric"] != 1 {
		t.Errorf("/metrics: %d %v", code, got)
	}
}

// disable: new requests go to the other member; enable: back in rotation.
func TestDisableMovesNewRequestsToTheOtherMemberAndEnableBringsItBack(t *testing.T) {
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	e := startEnv(t, "", "shared", a.Addr(), b.Addr())
	cl := dialWeb(t, e)
	seen := map[string]int{}
	for range 4 {
		seen[cl.get(t)]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("round robin before disable: %v", seen)
	}
	if code := e.call(t, "POST", "/api/v1/pools/p/members/"+a.Addr()+"/disable", nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	for i := range 6 {
		if got := cl.get(t); got != "b" {
			t.Fatalf("request %d after disabling a went to %s", i, got)
		}
	}
	if ps := getPools(t, e); ps[0].Members[0].State != "disabled" || ps[0].Members[0].Admin != "disabled" || ps[0].Members[0].Health != "up" {
		t.Errorf("pools after disable: %+v", ps[0].Members[0])
	}
	if code := e.call(t, "POST", "/api/v1/pools/p/members/"+a.Addr()+"/enable", nil); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	seen = map[string]int{}
	for range 4 {
		seen[cl.get(t)]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("after enable: %v, want both members in rotation", seen)
	}
}

// drain: the member's pooled conn gets Connection: close on its next
// request, and the member closes first; no new request goes to it.
func TestDrainRetiresTheMembersPooledConns(t *testing.T) {
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	e := startEnv(t, "", "per-client", a.Addr(), b.Addr())
	cl := dialWeb(t, e) // per-client: this client holds its member conn
	first := cl.get(t)
	drained, other := a, b
	if first == "b" {
		drained, other = b, a
	}
	if code := e.call(t, "POST", "/api/v1/pools/p/members/"+drained.Addr()+"/drain", nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	// The held conn's next request is its last: Connection: close.
	if got := cl.get(t); got != first {
		t.Fatalf("the request on the held conn went to %s, want %s", got, first)
	}
	if _, closes := drained.counts(); closes != 1 {
		t.Errorf("the drained member saw %d requests with Connection: close, want 1", closes)
	}
	socktest.WaitFor(t, 5*time.Second, "the drained member's conn closed", func() bool { return drained.Open() == 0 })
	for i := range 4 {
		if got := cl.get(t); got != other.name {
			t.Fatalf("request %d after the drain went to %s", i, got)
		}
	}
	ps := getPools(t, e)
	var m memberBody
	for _, x := range ps[0].Members {
		if x.Address == drained.Addr() {
			m = x
		}
	}
	if m.State != "draining" || m.Admin != "draining" || m.Active != 0 || m.Reuse["web"].RetiredByMemberClose != 1 {
		t.Errorf("the drained member: %+v", m)
	}
}
