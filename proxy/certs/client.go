package certs

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
)

// memberSessions is how many TLS sessions a member's client session cache
// keeps. Go keys the cache by server name and keeps one session per key,
// so a member needs very few.
const memberSessions = 8

// ClientConfig builds the *tls.Config tether uses toward a pool's members:
// roots from c.CA (system roots when ""), c.ServerName, the client
// certificate c.Cert/c.Key, c.MinVersionID, the TLS 1.2 suites
// c.CipherSuiteIDs and groups c.CurveIDs (nil: Go's defaults; config fills
// both), ALPN c.ALPN (defaultALPN when
// empty) and a session cache when c.SessionResumption. With
// c.InsecureSkipVerify it logs a warning: member certificates are not
// verified. Errors name the file and the reason. Dial each member with
// ForMember(base, addr).
func ClientConfig(c config.PoolTLS, defaultALPN []string, logger *zap.Logger) (*tls.Config, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	conf := &tls.Config{
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
		MinVersion:         c.MinVersionID,
		CipherSuites:       slices.Clone(c.CipherSuiteIDs),
		CurvePreferences:   slices.Clone(c.CurveIDs),
		NextProtos:         slices.Clone(c.ALPN),
	}
	if len(conf.NextProtos) == 0 {
		conf.NextProtos = slices.Clone(defaultALPN)
	}
	if c.CA != "" {
		pool, err := readCertPool("ca", c.CA)
		if err != nil {
			return nil, fmt.Errorf("certs: pool tls: %w", err)
		}
		conf.RootCAs = pool
	}
	switch {
	case c.Cert != "" && c.Key != "":
		kp, err := readKeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("certs: pool tls: %w", err)
		}
		conf.Certificates = []tls.Certificate{kp.cert}
	case c.Cert != "" || c.Key != "":
		return nil, fmt.Errorf("certs: pool tls: cert %q and key %q: set both or neither", c.Cert, c.Key)
	}
	if c.SessionResumption {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(memberSessions)
	}
	if c.InsecureSkipVerify {
		logger.Warn("pool tls: insecure_skip_verify is on: member certificates are NOT verified; anyone on the path can impersonate the members")
	}
	return conf, nil
}

// ForMember returns the config for one member, to build once per member:
// a clone of base with ServerName set from the member address's host when
// base has none (an IP host is verified against the certificate's IP
// addresses and sends no SNI), and a session cache of its own when base
// resumes sessions (members do not share session tickets).
func ForMember(base *tls.Config, memberAddr string) *tls.Config {
	conf := base.Clone()
	if conf.ServerName == "" {
		host := memberAddr
		if h, _, err := net.SplitHostPort(memberAddr); err == nil {
			host = h
		}
		conf.ServerName = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	}
	if base.ClientSessionCache != nil {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(memberSessions)
	}
	return conf
}
