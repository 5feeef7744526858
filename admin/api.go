package admin

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy"
)

// routes maps the endpoints. Each path also has a method-less pattern that
// answers 405 in JSON (the mux prefers the pattern with a method), and "/"
// answers 404.
func (a *Admin) routes() *http.ServeMux {
	mux := http.NewServeMux()
	get := map[string]http.HandlerFunc{
		"/healthz":                a.healthz,
		"/ready":                  a.ready,
		"/api/v1/status":          a.status,
		"/api/v1/virtual-servers": a.virtualServers,
		"/api/v1/pools":           a.pools,
		"/api/v1/connections":     a.connections,
	}
	for path, h := range get {
		mux.HandleFunc("GET "+path, h)
		mux.HandleFunc(path, methodNotAllowed("GET"))
	}
	for _, action := range []string{"enable", "disable", "drain"} {
		path := "/api/v1/pools/{pool}/members/{address}/" + action
		mux.HandleFunc("POST "+path, a.setState(action))
		mux.HandleFunc(path, methodNotAllowed("POST"))
	}
	mux.HandleFunc("POST /api/v1/reload", a.reload)
	mux.HandleFunc("/api/v1/reload", methodNotAllowed("POST"))
	mux.HandleFunc("POST /api/v1/upgrade", a.upgrade)
	mux.HandleFunc("/api/v1/upgrade", methodNotAllowed("POST"))
	if a.opts.Metrics != nil {
		mux.Handle("GET /metrics", a.opts.Metrics)
		mux.HandleFunc("/metrics", methodNotAllowed("GET"))
	}
	a.dashboardRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return mux
}

// apiError is every error's body.
type apiError struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
}

func writeError(w http.ResponseWriter, code int, msg string, problems ...string) {
	if problems == nil {
		problems = []string{}
	}
	writeJSON(w, code, apiError{Error: msg, Problems: problems})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	}
}

func (a *Admin) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// ready is 200 once every listener of the proxy is bound, and 503 again
// from the moment Shutdown begins (a load balancer in front stops sending).
func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	if !a.opts.Server.Ready() {
		msg := "not ready: listeners not bound yet"
		if a.opts.Server.Started() {
			msg = "not ready: shutting down"
		}
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type statusBody struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	ConfigPath    string    `json:"config_path"`
	ConfigSHA256  string    `json:"config_sha256"`
	LastReload    Result    `json:"last_reload"`
}

func (a *Admin) status(w http.ResponseWriter, _ *http.Request) {
	body := statusBody{
		Version:       a.opts.Version,
		Started:       a.started,
		UptimeSeconds: time.Since(a.started).Seconds(),
		ConfigPath:    a.opts.ConfigPath,
		ConfigSHA256:  a.cfgHash,
		LastReload:    a.load,
	}
	if rl := a.opts.Reloader; rl != nil {
		body.ConfigSHA256, body.LastReload = rl.ConfigSHA256(), rl.Last()
	}
	writeJSON(w, http.StatusOK, body)
}

type vsBody struct {
	Name           string      `json:"name"`
	Mode           string      `json:"mode"`
	Listen         string      `json:"listen"`
	Addr           string      `json:"addr"` // bound address ("" before Start)
	Pool           string      `json:"pool"`
	TLS            bool        `json:"tls"`
	MaxConnections int         `json:"max_connections"`
	ClientProfile  profileBody `json:"client_profile"`
	ServerProfile  profileBody `json:"server_profile"`
	Connections    proxy.Stats `json:"connections"`
	// Sockets, Requests, PoolReuse: see vsfields.go.
	Sockets   *socketsBody  `json:"sockets"`
	Requests  *requestsBody `json:"requests,omitempty"`
	PoolReuse *reuseBody    `json:"pool_reuse,omitempty"`
}

type profileBody struct {
	Name     string            `json:"name"`
	Resolved config.TCPProfile `json:"resolved"`
}

func (a *Admin) virtualServers(w http.ResponseWriter, _ *http.Request) {
	out := []vsBody{}
	vss := a.opts.Server.VirtualServers()
	census, censusOK := takeCensus(a.opts.Server, vss)
	for i, vs := range vss {
		c := vs.Config()
		client, server := vs.Profiles()
		b := vsBody{
			Name: c.Name, Mode: c.Mode, Listen: c.Listen, Pool: c.Pool, TLS: vs.TLS(),
			MaxConnections: c.MaxConnections,
			ClientProfile:  profileBody{c.ClientProfile, client},
			ServerProfile:  profileBody{c.ServerProfile, server},
			Connections:    vs.Stats(),
		}
		if addr := vs.Addr(); addr != nil {
			b.Addr = addr.String()
		}
		if censusOK {
			b.Sockets = census[i].body()
		}
		b.Requests, b.PoolReuse = vsCounters(vs)
		out = append(out, b)
	}
	writeJSON(w, http.StatusOK, map[string]any{"virtual_servers": out})
}

type poolBody struct {
	Name    string       `json:"name"`
	Members []memberBody `json:"members"`
}

type memberBody struct {
	Address string `json:"address"`
	State   string `json:"state"`  // what it offers: up, down, disabled, draining
	Admin   string `json:"admin"`  // enabled, disabled, draining
	Health  string `json:"health"` // up or down
	Active  int    `json:"active"`
	Idle    int    `json:"idle"`
	// Counters are pool.MemberStats; Reuse the reuse counters of each
	// http-mode virtual server using the pool, by virtual server name.
	Counters pool.MemberStats           `json:"counters"`
	Reuse    map[string]pool.ReuseStats `json:"reuse,omitempty"`
}

func (a *Admin) pools(w http.ResponseWriter, _ *http.Request) {
	reuse := map[string]map[string][]pool.ReuseStats{} // pool -> vs -> per member
	for _, vs := range a.opts.Server.VirtualServers() {
		if rs := vs.ReuseStats(); rs != nil {
			p := vs.Config().Pool
			if reuse[p] == nil {
				reuse[p] = map[string][]pool.ReuseStats{}
			}
			reuse[p][vs.Name()] = rs
		}
	}
	out := []poolBody{}
	for _, p := range a.opts.Server.Pools() {
		pb := poolBody{Name: p.Name(), Members: []memberBody{}}
		for i, st := range p.Stats() {
			mb := memberBody{
				Address: st.Address, State: st.State.String(), Admin: st.Admin.String(),
				Health: "up", Active: st.Active, Idle: st.Idle, Counters: st,
			}
			if !st.Healthy {
				mb.Health = "down"
			}
			for vs, rs := range reuse[p.Name()] {
				if mb.Reuse == nil {
					mb.Reuse = map[string]pool.ReuseStats{}
				}
				mb.Reuse[vs] = rs[i]
			}
			pb.Members = append(pb.Members, mb)
		}
		out = append(out, pb)
	}
	writeJSON(w, http.StatusOK, map[string]any{"pools": out})
}

// setState handles POST .../members/{address}/enable|disable|drain.
func (a *Admin) setState(action string) http.HandlerFunc {
	state := map[string]pool.AdminState{"enable": pool.AdminEnabled, "disable": pool.AdminDisabled, "drain": pool.AdminDraining}[action]
	return func(w http.ResponseWriter, r *http.Request) {
		name, addr := r.PathValue("pool"), r.PathValue("address")
		p := a.opts.Server.Pool(name)
		if p == nil {
			writeError(w, http.StatusNotFound, "no pool "+quote(name))
			return
		}
		var m *pool.Member
		for _, x := range p.Members() {
			if x.Address() == addr {
				m = x
			}
		}
		if m == nil {
			writeError(w, http.StatusNotFound, "pool "+quote(name)+" has no member "+quote(addr))
			return
		}
		old := m.SetState(state)
		a.log.Info("admin: member state set", zapMember(name, addr, old, state, r.RemoteAddr)...)
		writeJSON(w, http.StatusOK, map[string]string{
			"pool": name, "address": addr, "previous": old.String(), "admin": state.String(), "state": m.State().String(),
		})
	}
}
