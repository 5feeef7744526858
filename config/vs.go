package config

import (
	"fmt"
	"strconv"
	"strings"
)

// vsBuilder builds the [[virtual_server]] entries of a file one by one,
// against what build made before them (profiles, pools) and what the
// entries before took (names, listen addresses).
type vsBuilder struct {
	raw       *rawFile
	dir       string
	cfg       *Config
	profiles  *resolver
	v         *validator
	names     map[string]bool
	listeners []listener
}

// build builds and validates the i-th [[virtual_server]]: its own keys,
// then its http and tls tables, then what it refers to (pool, profiles),
// in that order (the order its problems are reported in within a line).
func (b *vsBuilder) build(i int, rvs rawVirtualServer) VirtualServer {
	vs := VirtualServer{
		Name:           strOr(rvs.Name, ""),
		Listen:         strOr(rvs.Listen, ""),
		Mode:           strOr(rvs.Mode, DefaultMode),
		Pool:           strOr(rvs.Pool, ""),
		ClientProfile:  strOr(rvs.ClientProfile, RootProfile),
		ServerProfile:  strOr(rvs.ServerProfile, RootProfile),
		MaxConnections: intOr(rvs.MaxConnections, DefaultVSMaxConnections),
	}
	path := b.place(i, vs.Name)
	b.checkName(path, vs.Name)
	b.checkListen(path, vs)
	vs.HTTP = b.http(path, vs.Mode, rvs.HTTP)
	if rvs.TLS != nil {
		vs.TLS = buildTLS(b.v, path+": tls", b.dir, vs.Mode, *rvs.TLS)
		b.checkHSTSHeader(path, vs)
	}
	b.checkPool(path, vs)
	b.checkProfiles(path, vs)
	if vs.MaxConnections < 0 {
		b.v.add(path, "max_connections", "must be >= 0 (0 = no limit)")
	}
	b.warnServerProfile(path, vs.ServerProfile)
	return vs
}

// place returns the path of the i-th virtual server's messages (by name, or
// by number when it has none) and tells the validator where it and its
// tables are.
func (b *vsBuilder) place(i int, name string) (path string) {
	path = fmt.Sprintf("virtual_server %d", i+1)
	if name != "" {
		path = fmt.Sprintf("virtual_server %q", name)
	}
	b.v.at(path, "virtual_server", strconv.Itoa(i))
	b.v.under(path+": http", path, "http")
	b.v.under(path+": tls", path, "tls")
	b.v.under(path+": tls: acme", path, "tls", "acme")
	b.v.under(path+": tls: hsts", path, "tls", "hsts")
	return path
}

// checkName requires a name no earlier virtual server took.
func (b *vsBuilder) checkName(path, name string) {
	if name == "" {
		b.v.add(path, "name", "is required")
		return
	}
	if b.names[name] {
		b.v.add(path, "name", "is used by another virtual_server")
	}
	b.names[name] = true
}

// checkListen requires a host:port that can bind beside the listeners of
// the earlier virtual servers (checkListeners), and records it.
func (b *vsBuilder) checkListen(path string, vs VirtualServer) {
	if vs.Listen == "" {
		b.v.add(path, "listen", "is required")
		return
	}
	if err := checkHostPort(vs.Listen, true); err != nil {
		b.v.add(path, fmt.Sprintf("listen %q", vs.Listen), err.Error())
		return
	}
	l := listener{path: path, listen: vs.Listen, bind: parseBind(vs.Listen), reusePort: b.cfg.Profiles[vs.ClientProfile].ReusePort}
	checkListeners(b.v, path, l, b.listeners)
	b.listeners = append(b.listeners, l)
}

// http builds and validates [virtual_server.http] for mode = "http"; it is
// nil otherwise, and refused when set with mode = "tcp". An unknown mode is
// reported here.
func (b *vsBuilder) http(path, mode string, rh rawHTTP) *HTTP {
	switch mode {
	case ModeTCP:
		if rh.set() {
			b.v.add(path, "http", `applies to mode = "http" only`)
		}
	case ModeHTTP:
		h := buildHTTP(rh)
		validateHTTP(b.v, path+": http", h)
		return &h
	default:
		b.v.add(path, "mode", fmt.Sprintf("%q is not a mode (want %q or %q)", mode, ModeTCP, ModeHTTP))
	}
	return nil
}

// checkHSTSHeader refuses a Strict-Transport-Security header in
// add_response_headers when [tls.hsts] sets it too.
func (b *vsBuilder) checkHSTSHeader(path string, vs VirtualServer) {
	if vs.TLS.HSTS == nil || vs.HTTP == nil {
		return
	}
	for name := range vs.HTTP.AddResponseHeaders {
		if strings.EqualFold(name, HSTSHeader) {
			b.v.add(path+": http", "add_response_headers", fmt.Sprintf("%q is also set by [tls.hsts]; keep one of them", name))
		}
	}
}

// checkPool requires a pool the file defines; in http mode, its TLS may
// offer only ALPN http/1.1 (reported on the pool).
func (b *vsBuilder) checkPool(path string, vs VirtualServer) {
	if vs.Pool == "" {
		b.v.add(path, "pool", "is required")
		return
	}
	if _, ok := b.raw.Pools[vs.Pool]; !ok {
		b.v.add(path, fmt.Sprintf("pool %q", vs.Pool), "is not defined (no [pool."+vs.Pool+"])")
		return
	}
	pt := b.cfg.Pools[vs.Pool].TLS
	if pt == nil || vs.Mode != ModeHTTP {
		return
	}
	for _, proto := range pt.ALPN {
		if proto != alpnHTTP1 {
			b.v.add(fmt.Sprintf("pool %q: tls", vs.Pool), fmt.Sprintf("alpn %q", proto),
				fmt.Sprintf("virtual_server %q uses this pool in http mode, which speaks %s only", vs.Name, alpnHTTP1))
		}
	}
}

// checkProfiles requires client_profile and server_profile to be defined;
// a profile that failed to resolve has been reported already.
func (b *vsBuilder) checkProfiles(path string, vs VirtualServer) {
	for _, p := range []struct{ key, name string }{{"client_profile", vs.ClientProfile}, {"server_profile", vs.ServerProfile}} {
		if _, ok := b.cfg.Profiles[p.name]; !ok && !b.profiles.failed[p.name] {
			b.v.add(path, fmt.Sprintf("%s %q", p.key, p.name), "is not defined (no [tcp_profile."+p.name+"])")
		}
	}
}

// warnServerProfile warns when the server_profile sets keys that apply to
// listeners only.
func (b *vsBuilder) warnServerProfile(path, name string) {
	if sp, ok := b.cfg.Profiles[name]; ok && (sp.ReusePort || sp.DeferAccept > 0) {
		b.cfg.Warnings = append(b.cfg.Warnings, path+": server_profile "+quote(sp.Name)+
			": reuse_port and defer_accept apply to listeners only; they have no effect on the server side")
	}
}

func buildHTTP(rh rawHTTP) HTTP {
	d := DefaultHTTP()
	return HTTP{
		MaxRequests:           intOr(rh.MaxRequests, d.MaxRequests),
		KeepaliveTimeout:      durOr(rh.KeepaliveTimeout, d.KeepaliveTimeout),
		RequestHeaderTimeout:  durOr(rh.RequestHeaderTimeout, d.RequestHeaderTimeout),
		MaxRequestLine:        intOr(rh.MaxRequestLine, d.MaxRequestLine),
		MaxHeaderBytes:        intOr(rh.MaxHeaderBytes, d.MaxHeaderBytes),
		ServerResponseTimeout: durOr(rh.ServerResponseTimeout, d.ServerResponseTimeout),
		ForwardedHeaders:      boolOr(rh.ForwardedHeaders, d.ForwardedHeaders),
		AddRequestHeaders:     rh.AddRequestHeaders,
		RemoveRequestHeaders:  rh.RemoveRequestHeaders,
		AddResponseHeaders:    rh.AddResponseHeaders,
		RemoveResponseHeaders: rh.RemoveResponseHeaders,
	}
}

func validateHTTP(v *validator, path string, h HTTP) {
	if h.MaxRequests < 0 {
		v.add(path, "max_requests", "must be >= 0 (0 = no limit)")
	}
	if h.KeepaliveTimeout <= 0 {
		v.add(path, "keepalive_timeout", "must be > 0")
	}
	if h.RequestHeaderTimeout <= 0 {
		v.add(path, "request_header_timeout", "must be > 0")
	}
	if h.ServerResponseTimeout <= 0 {
		v.add(path, "server_response_timeout", "must be > 0")
	}
	if h.MaxRequestLine < 64 || h.MaxRequestLine > 1<<20 {
		v.add(path, "max_request_line", "must be between 64 and 1048576")
	}
	if h.MaxHeaderBytes < 256 || h.MaxHeaderBytes > 1<<24 {
		v.add(path, "max_header_bytes", "must be between 256 and 16777216")
	}
	for _, set := range []struct {
		key string
		m   map[string]string
	}{{"add_request_headers", h.AddRequestHeaders}, {"add_response_headers", h.AddResponseHeaders}} {
		for _, name := range sortedKeys(set.m) {
			if !isToken(name) || hopByHop(name) {
				v.add(path, set.key, fmt.Sprintf("%q is not a header name tether may add (a token, not hop-by-hop or framing)", name))
			}
			if strings.ContainsAny(set.m[name], "\r\n\x00") {
				v.add(path, set.key, fmt.Sprintf("the value of %q holds CR, LF or NUL", name))
			}
		}
	}
	for _, set := range []struct {
		key   string
		names []string
	}{{"remove_request_headers", h.RemoveRequestHeaders}, {"remove_response_headers", h.RemoveResponseHeaders}} {
		for _, name := range set.names {
			if !isToken(name) || hopByHop(name) {
				v.add(path, set.key, fmt.Sprintf("%q is not a header name tether may remove (a token, not hop-by-hop or framing)", name))
			}
		}
	}
}

// hopByHop names the fields the proxy owns: framing, routing and hop-by-hop
// fields cannot be added or removed by configuration.
func hopByHop(name string) bool {
	switch strings.ToLower(name) {
	case "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "content-length", "host", "upgrade", "trailer":
		return true
	}
	return false
}
