package config

import (
	"time"
)

// Config is a loaded, validated configuration with every default filled in.
type Config struct {
	Global Global `toml:"global"`
	Log    Log    `toml:"log"`
	Admin  Admin  `toml:"admin"`
	// Profiles holds every TCP profile by name, resolved through its parents,
	// including the built-in root "tcp".
	Profiles map[string]TCPProfile `toml:"tcp_profile"`
	// Pools by name.
	Pools map[string]Pool `toml:"pool"`
	// VirtualServers in file order.
	VirtualServers []VirtualServer `toml:"virtual_server"`

	// Warnings are valid-but-suspicious settings (`tether check` prints them).
	Warnings []string `toml:"-"`
}

// Global holds process-wide settings.
type Global struct {
	// ShutdownTimeout bounds how long SIGTERM waits for open connections to
	// finish before closing them. Default 30 s; 0 = close them at once.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// Admin configures the admin API listener.
type Admin struct {
	// Listen is the admin API's host:port. Default DefaultAdminListen
	// (loopback); "" (set as "" or "off") = no admin listener. A listen
	// address that is not loopback requires TokenFile.
	Listen string `toml:"listen"`
	// TokenFile names a file holding the bearer token every admin request
	// must carry (surrounding white space trimmed); "" = no token.
	TokenFile string `toml:"token_file"`
	// ListenDefault reports that Listen is the default, not set in the file
	// (run goes on without the admin API when the default port is taken).
	ListenDefault bool `toml:"-"`
}

// Log configures zap.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error; default info
	Format string `toml:"format"` // json | console; default json
	// Access enables the one-line-per-connection access log. Default true.
	Access bool `toml:"access"`
	// File is where logs and access lines go: "" (the default) = stderr;
	// a path (relative to the config file) is opened for appending,
	// created 0640, and reopened on SIGUSR1 (logrotate's rename, then
	// reopen).
	File string `toml:"file"`
}

// CloseMode says how tether closes a socket it decides to close.
type CloseMode string

// Close modes.
const (
	// CloseGraceful sends FIN; TIME_WAIT lands on whichever side closes first.
	CloseGraceful CloseMode = "graceful"
	// CloseReset sends RST at once (SO_LINGER 0): unsent data is discarded
	// and no TIME_WAIT is left.
	CloseReset CloseMode = "reset"
	// CloseDrainReset waits until the kernel send queue is acknowledged
	// (bounded by DrainTimeout), then sends RST: no data lost, no TIME_WAIT.
	CloseDrainReset CloseMode = "drain-reset"
)

// TCPProfile is a fully resolved set of socket settings. It is plain data;
// package sockopt turns it into socket options.
type TCPProfile struct {
	Name   string `toml:"-"`
	Parent string `toml:"parent,omitempty"`

	// Keepalive sets SO_KEEPALIVE. The three settings below apply only when
	// it is on.
	Keepalive         bool          `toml:"keepalive"`
	KeepaliveIdle     time.Duration `toml:"keepalive_idle"`     // TCP_KEEPIDLE, whole seconds, >= 1 s
	KeepaliveInterval time.Duration `toml:"keepalive_interval"` // TCP_KEEPINTVL, whole seconds, >= 1 s
	KeepaliveProbes   int           `toml:"keepalive_probes"`   // TCP_KEEPCNT, 1..127

	// IdleTimeout closes a proxied connection when no byte moved either way
	// for this long. 0 = never.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// HalfCloseTimeout bounds a half-closed connection (one side sent FIN):
	// nothing moved for this long -> close (HAProxy's timeout client-fin,
	// F5's Close Wait). 0 = the idle timeout bounds it.
	HalfCloseTimeout time.Duration `toml:"half_close_timeout"`
	// ResetOnTimeout makes a close by idle or half-close timeout an RST,
	// whatever Close says (F5's default: on).
	ResetOnTimeout bool `toml:"reset_on_timeout"`
	// UserTimeout sets TCP_USER_TIMEOUT: how long sent data may stay
	// unacknowledged before the kernel drops the connection. 0 = kernel default.
	UserTimeout time.Duration `toml:"user_timeout"`
	// NoDelay sets TCP_NODELAY (disables Nagle).
	NoDelay bool `toml:"nodelay"`
	// Close is how tether closes this side: graceful | reset | drain-reset.
	Close CloseMode `toml:"close"`
	// DrainTimeout bounds drain-reset's wait for the send queue to empty.
	DrainTimeout time.Duration `toml:"drain_timeout"`
	// FinWait2Timeout sets TCP_LINGER2. 0 = kernel default (tcp_fin_timeout).
	FinWait2Timeout time.Duration `toml:"fin_wait2_timeout"`
	// SendBuffer / RecvBuffer set SO_SNDBUF / SO_RCVBUF in bytes (the kernel
	// doubles the value). 0 = kernel autotuning.
	SendBuffer int `toml:"send_buffer"`
	RecvBuffer int `toml:"recv_buffer"`
	// ReusePort sets SO_REUSEPORT on listeners (client side only).
	ReusePort bool `toml:"reuse_port"`
	// DeferAccept sets TCP_DEFER_ACCEPT on listeners, whole seconds. 0 = off.
	DeferAccept time.Duration `toml:"defer_accept"`
	// FastOpen is the TCP_FASTOPEN queue length on listeners; on the server
	// side any value > 0 turns on TCP_FASTOPEN_CONNECT. 0 = off.
	FastOpen int `toml:"fastopen"`
	// Backlog is the listen(2) backlog (capped by net.core.somaxconn).
	Backlog int `toml:"backlog"`
}

// Balancing methods.
const (
	MethodRoundRobin = "round-robin"
	MethodWeighted   = "weighted"
	MethodLeastConns = "least-conns"
	MethodRandomTwo  = "random-two"
	MethodSourceHash = "source-hash"
)

// Methods lists the balancing methods in documentation order.
var Methods = []string{MethodRoundRobin, MethodWeighted, MethodLeastConns, MethodRandomTwo, MethodSourceHash}

// Pool is a named set of members with a balancing method and a health monitor.
type Pool struct {
	Name string `toml:"-"`
	// Method picks a member for each new connection.
	Method string `toml:"method"`
	// ConnectTimeout bounds one connect to a member.
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// ConnectRetries is how many further members are tried after a failed
	// connect (each member at most once per client connection). 0 = no retry.
	ConnectRetries int `toml:"connect_retries"`
	// DrainTimeout bounds a draining member (drained at run time, or
	// removed by a reload): its idle pooled conns wait this long for the
	// member to close them (the member closes first), its tcp relays may
	// go on this long; then tether closes what is left. Default 60 s; > 0.
	DrainTimeout time.Duration `toml:"member_drain_timeout"`
	// Preconnect keeps this many established, idle server-side connections
	// ready per server profile that uses the pool, spread over the members
	// that are up. Each is used once. 0 = off.
	Preconnect int      `toml:"preconnect"`
	Members    []Member `toml:"members"`
	Health     Health   `toml:"health"`
	// Reuse (its keys sit in [pool.NAME] itself) is used by http-mode
	// virtual servers only.
	Reuse
	// TLS toward the members; nil = plain TCP.
	TLS *PoolTLS `toml:"tls,omitempty"`
}

// Member states settable in the config.
const (
	StateEnabled  = "enabled"
	StateDisabled = "disabled"
)

// Member is one backend address of a pool.
type Member struct {
	Address string `toml:"address"`
	// Weight is the member's share for the weighted method (>= 1). Default 1.
	Weight int `toml:"weight"`
	// MaxConnections caps concurrent server-side connections to the member,
	// preconnected ones included. 0 = no limit.
	MaxConnections int `toml:"max_connections"`
	// State is enabled (default) or disabled (gets no new connections).
	State string `toml:"state"`
}

// Health monitor types.
const (
	HealthTCP  = "tcp"
	HealthHTTP = "http"
	HealthNone = "none"
)

// Health is a pool's active health monitor.
type Health struct {
	Type     string        `toml:"type"`     // tcp | http | none; default tcp
	Interval time.Duration `toml:"interval"` // between checks of one member
	Timeout  time.Duration `toml:"timeout"`  // one check (connect, request, status line); must be <= interval
	Rise     int           `toml:"rise"`     // consecutive successes to mark up
	Fall     int           `toml:"fall"`     // consecutive failures to mark down

	// The http type sends `Method Path HTTP/1.1` with `Host` and
	// `Connection: close`, and wants a status within ExpectStatus.
	// All four are empty unless Type is http.
	Method string `toml:"method,omitempty"` // default GET
	Path   string `toml:"path,omitempty"`   // default /
	// Host is the Host header; "" = the member's address.
	Host string `toml:"host,omitempty"`
	// ExpectStatus is "200-399" (default), "200" or "200-299".
	ExpectStatus string `toml:"expect_status,omitempty"`
	// StatusMin and StatusMax are ExpectStatus parsed.
	StatusMin int `toml:"-"`
	StatusMax int `toml:"-"`
}

// Virtual server modes.
const (
	ModeTCP  = "tcp"
	ModeHTTP = "http"
)

// Server-side connection reuse in http mode.
const (
	// ReuseShared: any idle member conn serves any client's request, one at
	// a time (F5 OneConnect, HAProxy http-reuse always, nginx keepalive).
	ReuseShared = "shared"
	// ReusePerClient: a client conn keeps its member conn for its life;
	// the member conn goes back to the pool when the client leaves.
	ReusePerClient = "per-client"
	// ReuseNever: a new member conn per client conn, closed after it.
	ReuseNever = "never"
)

// HTTP holds a virtual server's http-mode settings (the client side).
type HTTP struct {
	// MaxRequests per client connection; the last response says
	// "Connection: close". Default 100 (Apache's MaxKeepAliveRequests);
	// 0 = no limit.
	MaxRequests int `toml:"max_requests"`
	// KeepaliveTimeout: an idle client connection between requests is
	// closed after this. Default 15 s (Apache's KeepAliveTimeout).
	KeepaliveTimeout time.Duration `toml:"keepalive_timeout"`
	// RequestHeaderTimeout: a request head must arrive whole within this
	// from its first byte, else 408 (slowloris guard). Default 10 s.
	RequestHeaderTimeout time.Duration `toml:"request_header_timeout"`
	// MaxRequestLine bounds the request line (414 beyond). Default 8 KiB.
	MaxRequestLine int `toml:"max_request_line"`
	// MaxHeaderBytes bounds the header block (431 beyond). Default 32 KiB.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// ServerResponseTimeout: the member must begin its response head within
	// this after the request was sent, else 504. Default 60 s.
	ServerResponseTimeout time.Duration `toml:"server_response_timeout"`
	// ForwardedHeaders adds X-Forwarded-For (appended), X-Forwarded-Proto
	// and X-Forwarded-Host. Default true.
	ForwardedHeaders bool `toml:"forwarded_headers"`
	// AddRequestHeaders are added to every request sent to a member, after
	// RemoveRequestHeaders took out the client's fields of those names (any
	// case). The response lists work the same toward the client.
	AddRequestHeaders     map[string]string `toml:"add_request_headers,omitempty"`
	RemoveRequestHeaders  []string          `toml:"remove_request_headers,omitempty"`
	AddResponseHeaders    map[string]string `toml:"add_response_headers,omitempty"`
	RemoveResponseHeaders []string          `toml:"remove_response_headers,omitempty"`
}

// Reuse holds a pool's server-side reuse settings (http mode).
type Reuse struct {
	// Mode is shared (default) | per-client | never.
	Mode string `toml:"reuse"`
	// MaxIdle idle conns kept per member. Default 32.
	MaxIdle int `toml:"max_idle"`
	// MinIdle established idle conns kept per member even with no traffic
	// (a warm pool), refilled in the background, never beyond the member's
	// max_connections nor MaxIdle. 0 = off.
	MinIdle int `toml:"min_idle"`
	// IdleTimeout closes a member conn idle this long, from tether's side
	// (always shorter than the member's own: a Keep-Alive timeout the
	// member announces caps it, minus KeepaliveMargin). Default 60 s.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxAge retires a member conn this old (less a random AgeJitter share):
	// its last request says "Connection: close" so the member closes first.
	// 0 = no limit.
	MaxAge time.Duration `toml:"max_age"`
	// AgeJitter is the largest share taken off MaxAge at random per conn, so
	// a pool warmed at once does not expire at once. Default 0.1; [0, 1).
	AgeJitter float64 `toml:"age_jitter"`
	// MaxRequests retires a member conn after this many requests. 0 = no
	// limit.
	MaxRequests int `toml:"max_requests"`
	// QueueTimeout: when every member is at max_connections a request
	// waits this long for a conn, then gets 503. Default 3 s.
	QueueTimeout time.Duration `toml:"queue_timeout"`
	// KeepaliveMargin is taken off a member's announced Keep-Alive timeout.
	// Default 1 s.
	KeepaliveMargin time.Duration `toml:"keepalive_margin"`
	// PeekInterval is how often every idle member conn (reuse idle lists,
	// min_idle and preconnect stocks alike) is checked with a MSG_PEEK, so a
	// member's close is noticed while the conn idles. Default 1 s; > 0.
	PeekInterval time.Duration `toml:"peek_interval"`
	// RetireWait bounds how long a retired member conn (its last request
	// said "Connection: close") waits for the member's FIN before tether
	// closes it with the server profile's close mode. Default 2 s; > 0.
	RetireWait time.Duration `toml:"retire_wait"`
	// NonIdempotentSafeIdle: a non-idempotent request (POST, PATCH, an
	// upgrade ...: not replayed once sent) is sent on the member's most
	// recently used idle conn only when that conn has idled less than
	// this; else NonIdempotentFallback decides. A member whose idle timer
	// fires as the request arrives loses it, and the shortest common
	// keep-alive timeouts (gunicorn 2 s; Node, Apache, uvicorn 5 s) are
	// longer than this. Default 1 s; 0 = no limit.
	NonIdempotentSafeIdle time.Duration `toml:"non_idempotent_safe_idle"`
	// NonIdempotentFallback is what a non-idempotent request does when
	// the youngest idle conn is older than NonIdempotentSafeIdle:
	// FallbackDial (default) dials a fresh conn (at the member's
	// max_connections, the old idle conn is closed to free its slot),
	// FallbackReuse takes it anyway.
	NonIdempotentFallback string `toml:"non_idempotent_fallback"`
}

// What a non-idempotent request does when every idle conn is older than
// non_idempotent_safe_idle.
const (
	FallbackDial  = "dial"
	FallbackReuse = "reuse"
)

// VirtualServer is one listening address.
type VirtualServer struct {
	Name   string `toml:"name"`
	Listen string `toml:"listen"`
	Mode   string `toml:"mode"`
	Pool   string `toml:"pool"`
	// ClientProfile is applied to the listener and accepted client sockets;
	// ServerProfile to sockets dialed to members. Both default to "tcp".
	ClientProfile string `toml:"client_profile"`
	ServerProfile string `toml:"server_profile"`
	// MaxConnections caps concurrent client connections; at the limit tether
	// stops accepting (the kernel backlog holds the rest). 0 = no limit.
	MaxConnections int `toml:"max_connections"`
	// HTTP holds the http-mode settings; nil in tcp mode.
	HTTP *HTTP `toml:"http,omitempty"`
	// TLS terminates TLS from clients; nil = plain TCP.
	TLS *TLS `toml:"tls,omitempty"`
}

// Client returns the resolved client-side profile of vs.
func (c *Config) Client(vs VirtualServer) TCPProfile { return c.Profiles[vs.ClientProfile] }

// Server returns the resolved server-side profile of vs.
func (c *Config) Server(vs VirtualServer) TCPProfile { return c.Profiles[vs.ServerProfile] }

// RelayIdleTimeout is the idle timeout of a proxied connection: the shorter
// of the two sides' idle timeouts, where 0 (never) yields to the other.
func RelayIdleTimeout(client, server TCPProfile) time.Duration {
	return shorter(client.IdleTimeout, server.IdleTimeout)
}

// RelayHalfCloseTimeout is the half-close bound of a proxied connection,
// chosen as RelayIdleTimeout is; 0 = the idle timeout bounds it.
func RelayHalfCloseTimeout(client, server TCPProfile) time.Duration {
	return shorter(client.HalfCloseTimeout, server.HalfCloseTimeout)
}

// shorter returns the smaller of a and b, where 0 (none) yields to the other.
func shorter(a, b time.Duration) time.Duration {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	case a < b:
		return a
	}
	return b
}
