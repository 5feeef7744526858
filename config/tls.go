package config

import "time"

// Client certificate policies of a TLS virtual server.
const (
	ClientAuthNone    = "none"    // no client certificate asked for
	ClientAuthRequest = "request" // asked for; verified against ClientCA when sent
	ClientAuthRequire = "require" // required and verified against ClientCA
)

// ACME challenge types tether can answer.
const (
	ChallengeTLSALPN = "tls-alpn-01" // answered on the virtual server's own TLS listener
	ChallengeHTTP    = "http-01"     // answered by a listener certmagic opens on ACME.HTTPPort
)

// TLS is a virtual server's TLS termination (F5's client SSL profile):
// [virtual_server.tls]. Exactly one of Certificates and ACME is set. Every
// path is absolute once loaded (relative ones are taken from the config
// file's directory).
type TLS struct {
	// Certificates are served by SNI name; a client without SNI, or with a
	// name none matches, gets Default (the first one unless one sets
	// default = true).
	Certificates []Certificate `toml:"certificates,omitempty"`
	// ACME obtains and renews certificates from an ACME CA (certmagic).
	ACME *ACME `toml:"acme,omitempty"`
	// MinVersion is "1.2" (default) or "1.3"; MinVersionID is it as a
	// crypto/tls constant.
	MinVersion   string `toml:"min_version"`
	MinVersionID uint16 `toml:"-"`
	// ALPN protocols offered, in preference order. Default ["http/1.1"] in
	// http mode, none in tcp mode. Only "http/1.1" makes sense in http mode.
	ALPN []string `toml:"alpn"`
	// ClientAuth is none (default) | request | require; ClientCA (a PEM
	// bundle) verifies client certificates and is required unless none.
	ClientAuth string `toml:"client_auth"`
	ClientCA   string `toml:"client_ca,omitempty"`
	// SessionTickets enables TLS session resumption by tickets (default
	// true); the ticket keys rotate every TicketKeyRotation (default 12h;
	// a key stays valid for resumption for 2 rotations).
	SessionTickets    bool          `toml:"session_tickets"`
	TicketKeyRotation time.Duration `toml:"ticket_key_rotation"`
	// HandshakeTimeout bounds a client's whole TLS handshake (default 10 s).
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// WatchInterval is how often certificate files are checked for changes
	// (mtime, size); a change reloads them as SIGHUP does. Default 5 s;
	// 0 = only on SIGHUP.
	WatchInterval time.Duration `toml:"watch_interval"`
}

// Certificate is one certificate/key PEM file pair.
type Certificate struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// Default marks the certificate for clients without a matching SNI
	// name; at most one may set it.
	Default bool `toml:"default,omitempty"`
}

// ACME configures certificates from an ACME CA (certmagic).
type ACME struct {
	Email string `toml:"email"`
	// CA is the directory URL. Default Let's Encrypt production.
	CA string `toml:"ca"`
	// Domains are obtained at start (and renewed by certmagic).
	Domains []string `toml:"domains"`
	// Storage is where certmagic keeps accounts, keys and certificates.
	// Default: certmagic's default ($XDG_DATA_HOME/certmagic).
	Storage string `toml:"storage"`
	// CARoot is a PEM bundle trusted for the CA's own HTTPS endpoint (a
	// private or test CA); "" = system roots.
	CARoot string `toml:"ca_root,omitempty"`
	// Challenges tried, in order: tls-alpn-01 (default, answered on the
	// virtual server's listener, which the CA must reach on port 443 or
	// on TLSALPNPort) and/or http-01.
	Challenges []string `toml:"challenges"`
	// HTTPPort is where certmagic listens for http-01 (default 80);
	// TLSALPNPort is the port the CA dials for tls-alpn-01 (default 443).
	// Both matter only toward test CAs, which dial other ports.
	HTTPPort    int `toml:"http_port"`
	TLSALPNPort int `toml:"tls_alpn_port"`
	// OnDemand obtains a certificate at the first handshake for a name in
	// OnDemandAllow (exact names or "*.example.com" patterns); off by
	// default, and it needs a non-empty allow-list.
	OnDemand      bool     `toml:"on_demand"`
	OnDemandAllow []string `toml:"on_demand_allow,omitempty"`
}

// PoolTLS is TLS toward a pool's members (F5's server SSL profile):
// [pool.NAME.tls].
type PoolTLS struct {
	// ServerName is sent as SNI and verified against the member's
	// certificate; "" = the member address's host.
	ServerName string `toml:"server_name"`
	// CA is a PEM bundle of roots for the members' certificates; "" =
	// system roots.
	CA string `toml:"ca,omitempty"`
	// InsecureSkipVerify accepts any member certificate (off; tether warns
	// loudly when on).
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// Cert and Key: a client certificate for members that require one.
	Cert string `toml:"cert,omitempty"`
	Key  string `toml:"key,omitempty"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion   string `toml:"min_version"`
	MinVersionID uint16 `toml:"-"`
	// ALPN offered to members; default ["http/1.1"] when an http-mode
	// virtual server uses the pool, none otherwise.
	ALPN []string `toml:"alpn"`
	// HandshakeTimeout bounds the TLS handshake with a member, after the
	// TCP connect (default 5 s).
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// SessionResumption keeps TLS sessions per member for resumed
	// handshakes on new conns (default true).
	SessionResumption bool `toml:"session_resumption"`
}
