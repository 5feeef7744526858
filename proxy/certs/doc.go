// Package certs owns the certificates of tether's TLS virtual servers and the
// TLS client configurations toward pool members.
//
// A Manager serves one virtual server (F5's client SSL profile). Its
// certificates live in a certmagic.Cache of its own, so SNI on one virtual
// server never finds another's certificates. They come either from files
// (config.TLS.Certificates: re-read on Reload, e.g. SIGHUP, and by a watcher
// that polls their mtime and size) or from an ACME CA through certmagic
// (config.TLS.ACME: obtained in the background after Start, renewed by
// certmagic, optionally on demand at the first handshake for an allowed
// name). The Manager builds the server *tls.Config: certificate by SNI, ALPN,
// minimum version, client certificates, and session tickets whose keys it
// rotates itself.
//
// ClientConfig and ForMember build the *tls.Config tether uses toward a
// pool's members (F5's server SSL profile).
//
// certs reads no TOML and applies no defaults: config hands it validated
// structs. It does not accept connections or run handshakes; the proxy does,
// and closes a connection that only answered an ACME tls-alpn-01 challenge
// (IsChallenge).
//
// Package acmetest runs an in-process ACME CA (pebble) for tests of this
// package and of the proxy.
package certs
