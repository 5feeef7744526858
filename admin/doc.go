// Package admin serves tether's admin API: status, virtual servers, pools
// and their members, member state changes (enable, disable, drain), each
// virtual server's live connections, liveness and readiness, and the
// metrics handler it is given.
//
// It owns the admin listener and its access rules: changes only by POST,
// every POST carries "X-Tether: 1" (a cross-site form cannot send it), and
// with a token every request carries "Authorization: Bearer TOKEN",
// compared in constant time, except GET /healthz and /ready (probes, which
// say only alive or ready). It is not reachable off loopback without a
// token (config refuses that; New checks it again). It holds no proxy
// logic: it reads proxy.Server and pool state through their exported
// methods and calls pool.Member.SetState.
//
// Reloader re-reads the config file and puts it in force (SIGHUP and POST
// /api/v1/reload).
//
// POST /api/v1/upgrade runs the hot binary upgrade it is given
// (Options.Upgrade, upgrade.go) and answers once the new process is ready
// or failed; Options.Listener lets the admin listener come from the
// process tether replaced, or from systemd.
//
// The dashboard (dashboard.go, ui/) is a page at "/" that reads this API
// every 2 s; its shell and assets are served without the token, the data
// never is.
//
// GET /api/v1/connections lists a virtual server's proxied connections,
// both sides, with TCP_INFO (conns.go).
package admin
