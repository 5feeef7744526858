package config

import (
	"crypto/tls"
	"time"
)

// RootProfile is the name of the built-in TCP profile every other profile
// descends from. It cannot be redefined; a profile without `parent` inherits
// from it.
const RootProfile = "tcp"

// Every default tether applies lives in this file, and only here.
//
// References: F5 BIG-IP's "tcp" profile (keepalive interval 1800 s, idle
// timeout 300 s, reset on timeout), Linux (keepalive 75 s x 9 probes),
// HAProxy/nginx (3 s connect timeout, 2 s health interval, rise 2 / fall 3).

// DefaultProfile returns the built-in root TCP profile "tcp".
func DefaultProfile() TCPProfile {
	return TCPProfile{
		Name:              RootProfile,
		Keepalive:         true,
		KeepaliveIdle:     1800 * time.Second, // F5 "Keep Alive Interval"
		KeepaliveInterval: 75 * time.Second,   // Linux tcp_keepalive_intvl
		KeepaliveProbes:   9,                  // Linux tcp_keepalive_probes
		IdleTimeout:       300 * time.Second,  // F5 idle timeout
		HalfCloseTimeout:  0,                  // the idle timeout bounds half-closed connections
		ResetOnTimeout:    true,               // F5's default: a timed-out connection is reset
		UserTimeout:       0,                  // kernel default
		NoDelay:           true,
		Close:             CloseGraceful,
		DrainTimeout:      2 * time.Second,
		FinWait2Timeout:   0, // kernel default (net.ipv4.tcp_fin_timeout, 60 s)
		SendBuffer:        0, // kernel autotuning
		RecvBuffer:        0, // kernel autotuning
		ReusePort:         false,
		DeferAccept:       0,
		FastOpen:          0,
		Backlog:           4096,
	}
}

// Pool defaults.
const (
	DefaultMethod         = MethodRoundRobin
	DefaultConnectTimeout = 3 * time.Second
	DefaultConnectRetries = 2 // after a failed connect, up to 2 more members are tried
	DefaultDrainTimeout   = 60 * time.Second
	DefaultWeight         = 1
)

// DefaultHealth is the health monitor a pool gets when it names none: a TCP
// connect every 2 s, 1 s to answer, up after 2 successes, down after 3
// failures (HAProxy's inter/rise/fall).
func DefaultHealth() Health {
	return Health{
		Type:     HealthTCP,
		Interval: 2 * time.Second,
		Timeout:  1 * time.Second,
		Rise:     2,
		Fall:     3,
	}
}

// Defaults of the http health check: GET /, healthy on any 2xx or 3xx (as
// HAProxy's httpchk).
const (
	DefaultHealthMethod      = "GET"
	DefaultHealthPath        = "/"
	DefaultHealthExpectation = "200-399"
)

// DefaultHTTP is a virtual server's http block when the file sets nothing:
// Apache's keepalive limits, nginx's header limits.
func DefaultHTTP() HTTP {
	return HTTP{
		MaxRequests:           100,
		KeepaliveTimeout:      15 * time.Second,
		RequestHeaderTimeout:  10 * time.Second,
		MaxRequestLine:        8 << 10,
		MaxHeaderBytes:        32 << 10,
		ServerResponseTimeout: 60 * time.Second,
		ForwardedHeaders:      true,
	}
}

// DefaultReuse is a pool's server-side reuse when the file sets nothing.
func DefaultReuse() Reuse {
	return Reuse{
		Mode:            ReuseShared,
		MaxIdle:         32,
		IdleTimeout:     60 * time.Second, // a member's announced Keep-Alive timeout caps it per conn
		MaxAge:          0,
		AgeJitter:       0.1,
		MinIdle:         0,
		MaxRequests:     0,
		QueueTimeout:    3 * time.Second,
		KeepaliveMargin: time.Second,
		PeekInterval:    time.Second,
		RetireWait:      2 * time.Second,
		// Below the shortest common keep-alive timeout (gunicorn's 2 s)
		// with room; a busy pool's youngest conn is far younger.
		NonIdempotentSafeIdle: time.Second,
		NonIdempotentFallback: FallbackDial,
	}
}

// Virtual server defaults.
const (
	DefaultMode             = ModeTCP
	DefaultVSMaxConnections = 10000
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultLogLevel         = "info"
	DefaultLogFormat        = "json"
	DefaultAccessLog        = true
	// DefaultAdminListen is the admin API's address: loopback only.
	DefaultAdminListen = "127.0.0.1:9901"
)

// DefaultTLS is a virtual server's [virtual_server.tls] block before the
// file's keys are applied; Certificates and ACME have no default (exactly
// one must be set). ALPN offers http/1.1 in http mode and nothing in tcp
// mode.
func DefaultTLS(mode string) TLS {
	t := TLS{
		Profile:           ProfileIntermediate,
		MinVersion:        "1.2",
		MinVersionID:      tls.VersionTLS12,
		CipherSuites:      DefaultCipherSuites(),
		CipherSuiteIDs:    suiteIDs(DefaultCipherSuites()),
		Curves:            DefaultCurves(),
		CurveIDs:          curveIDs(DefaultCurves()),
		ClientAuth:        ClientAuthNone,
		SessionTickets:    true,
		TicketKeyRotation: 12 * time.Hour, // a ticket stays resumable for 2 rotations
		HandshakeTimeout:  10 * time.Second,
		WatchInterval:     5 * time.Second,
		OCSPStapling:      true,
	}
	if mode == ModeHTTP {
		t.ALPN = []string{"http/1.1"}
	}
	return t
}

// DefaultCipherSuites are the TLS 1.2 suites of profile "intermediate",
// on both sides: Mozilla's intermediate list less its DHE suites (Go has
// none), ECDHE with AES-GCM or ChaCha20-Poly1305 only, no CBC, no RSA key
// exchange. Go ignores the order (it puts AES-GCM first when the CPU has
// AES instructions, ChaCha20 otherwise); it is Mozilla's. TLS 1.3 suites
// are Go's and not configurable.
func DefaultCipherSuites() []string {
	return []string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
		"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	}
}

// DefaultCurves are the key exchange groups of both profiles, on both
// sides: Mozilla's X25519, P-256, P-384, with Go's post-quantum hybrid
// X25519MLKEM768 (TLS 1.3 only) kept first, as Go 1.24+, Chrome, Firefox
// and OpenSSL 3.5 do. Go picks in its own order (the hybrid, then X25519,
// P-256, P-384), preferring a group the client sent a key share for, so
// the hybrid costs no extra round trip. P-521 and Go 1.26's
// SecP256r1MLKEM768 and SecP384r1MLKEM1024 are left out (opt in with
// curves).
func DefaultCurves() []string {
	return []string{"X25519MLKEM768", "X25519", "P-256", "P-384"}
}

// DefaultACME is the acme table before the file's keys are applied: Let's
// Encrypt production (certmagic.LetsEncryptProductionCA), the tls-alpn-01
// challenge, the standard ports, certmagic's own storage, certmagic's
// renewal timing (checked every 10 minutes, renewed with a third of the
// lifetime left).
func DefaultACME() ACME {
	return ACME{
		CA:          "https://acme-v02.api.letsencrypt.org/directory",
		Challenges:  []string{ChallengeTLSALPN},
		HTTPPort:    80,
		TLSALPNPort: 443,

		RenewInterval:      10 * time.Minute,
		RenewalWindowRatio: 1.0 / 3,
	}
}

// DefaultPoolTLS is a pool's [pool.NAME.tls] block before the file's keys
// are applied: system roots, SNI from the member address, no client
// certificate. ALPN stays nil: the proxy offers http/1.1 when an http-mode
// virtual server uses the pool.
func DefaultPoolTLS() PoolTLS {
	return PoolTLS{
		Profile:           ProfileIntermediate,
		MinVersion:        "1.2",
		MinVersionID:      tls.VersionTLS12,
		CipherSuites:      DefaultCipherSuites(),
		CipherSuiteIDs:    suiteIDs(DefaultCipherSuites()),
		Curves:            DefaultCurves(),
		CurveIDs:          curveIDs(DefaultCurves()),
		HandshakeTimeout:  5 * time.Second,
		SessionResumption: true,
	}
}

// CertExpiryWarning: a certificate file that expires within this is loaded
// with a warning (`tether check` prints it).
const CertExpiryWarning = 30 * 24 * time.Hour
