package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// duration is a TOML duration: a string such as "300s" or "1.5s". Integers
// are refused (a bare 1800 would be ambiguous).
type duration struct{ d time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a string like \"300s\" or \"1.5s\")", string(b))
	}
	d.d = v
	return nil
}

// The raw* types mirror the file: pointers tell "unset" from a zero value,
// which profile inheritance and defaulting need.

type rawFile struct {
	Global         rawGlobal             `toml:"global"`
	Log            rawLog                `toml:"log"`
	Admin          rawAdmin              `toml:"admin"`
	Profiles       map[string]rawProfile `toml:"tcp_profile"`
	Pools          map[string]rawPool    `toml:"pool"`
	VirtualServers []rawVirtualServer    `toml:"virtual_server"`
}

type rawGlobal struct {
	ShutdownTimeout *duration `toml:"shutdown_timeout"`
}

type rawLog struct {
	Level  *string `toml:"level"`
	Format *string `toml:"format"`
	Access *bool   `toml:"access"`
	File   *string `toml:"file"`
}

type rawAdmin struct {
	Listen    *string `toml:"listen"`
	TokenFile *string `toml:"token_file"`
}

type rawProfile struct {
	Parent            *string   `toml:"parent"`
	Keepalive         *bool     `toml:"keepalive"`
	KeepaliveIdle     *duration `toml:"keepalive_idle"`
	KeepaliveInterval *duration `toml:"keepalive_interval"`
	KeepaliveProbes   *int      `toml:"keepalive_probes"`
	IdleTimeout       *duration `toml:"idle_timeout"`
	HalfCloseTimeout  *duration `toml:"half_close_timeout"`
	ResetOnTimeout    *bool     `toml:"reset_on_timeout"`
	UserTimeout       *duration `toml:"user_timeout"`
	NoDelay           *bool     `toml:"nodelay"`
	Close             *string   `toml:"close"`
	DrainTimeout      *duration `toml:"drain_timeout"`
	FinWait2Timeout   *duration `toml:"fin_wait2_timeout"`
	SendBuffer        *int      `toml:"send_buffer"`
	RecvBuffer        *int      `toml:"recv_buffer"`
	ReusePort         *bool     `toml:"reuse_port"`
	DeferAccept       *duration `toml:"defer_accept"`
	FastOpen          *int      `toml:"fastopen"`
	Backlog           *int      `toml:"backlog"`
}

type rawPool struct {
	Reuse           *string     `toml:"reuse"`
	MaxIdle         *int        `toml:"max_idle"`
	IdleTimeout     *duration   `toml:"idle_timeout"`
	MaxAge          *duration   `toml:"max_age"`
	AgeJitter       *float64    `toml:"age_jitter"`
	MinIdle         *int        `toml:"min_idle"`
	MaxRequests     *int        `toml:"max_requests"`
	QueueTimeout    *duration   `toml:"queue_timeout"`
	KeepaliveMargin *duration   `toml:"keepalive_margin"`
	PeekInterval    *duration   `toml:"peek_interval"`
	RetireWait      *duration   `toml:"retire_wait"`
	NISafeIdle      *duration   `toml:"non_idempotent_safe_idle"`
	NIFallback      *string     `toml:"non_idempotent_fallback"`
	Method          *string     `toml:"method"`
	ConnectTimeout  *duration   `toml:"connect_timeout"`
	ConnectRetries  *int        `toml:"connect_retries"`
	DrainTimeout    *duration   `toml:"member_drain_timeout"`
	Preconnect      *int        `toml:"preconnect"`
	Members         []rawMember `toml:"members"`
	Health          rawHealth   `toml:"health"`
	TLS             *rawPoolTLS `toml:"tls"`
}

type rawMember struct {
	Address        *string `toml:"address"`
	Weight         *int    `toml:"weight"`
	MaxConnections *int    `toml:"max_connections"`
	State          *string `toml:"state"`
}

type rawHealth struct {
	Type         *string   `toml:"type"`
	Interval     *duration `toml:"interval"`
	Timeout      *duration `toml:"timeout"`
	Rise         *int      `toml:"rise"`
	Fall         *int      `toml:"fall"`
	Method       *string   `toml:"method"`
	Path         *string   `toml:"path"`
	Host         *string   `toml:"host"`
	ExpectStatus *string   `toml:"expect_status"`
}

type rawVirtualServer struct {
	Name           *string `toml:"name"`
	Listen         *string `toml:"listen"`
	Mode           *string `toml:"mode"`
	Pool           *string `toml:"pool"`
	ClientProfile  *string `toml:"client_profile"`
	ServerProfile  *string `toml:"server_profile"`
	MaxConnections *int    `toml:"max_connections"`
	HTTP           rawHTTP `toml:"http"`
	TLS            *rawTLS `toml:"tls"`
}

type rawHTTP struct {
	MaxRequests           *int      `toml:"max_requests"`
	KeepaliveTimeout      *duration `toml:"keepalive_timeout"`
	RequestHeaderTimeout  *duration `toml:"request_header_timeout"`
	MaxRequestLine        *int      `toml:"max_request_line"`
	MaxHeaderBytes        *int      `toml:"max_header_bytes"`
	ServerResponseTimeout *duration `toml:"server_response_timeout"`
	ForwardedHeaders      *bool     `toml:"forwarded_headers"`

	AddRequestHeaders     map[string]string `toml:"add_request_headers"`
	RemoveRequestHeaders  []string          `toml:"remove_request_headers"`
	AddResponseHeaders    map[string]string `toml:"add_response_headers"`
	RemoveResponseHeaders []string          `toml:"remove_response_headers"`
}

// rawTLS is [virtual_server.tls]; paths are as written in the file.
type rawTLS struct {
	Certificates      []rawCertificate `toml:"certificates"`
	ACME              *rawACME         `toml:"acme"`
	Profile           *string          `toml:"profile"`
	MinVersion        *string          `toml:"min_version"`
	CipherSuites      *[]string        `toml:"cipher_suites"`
	Curves            *[]string        `toml:"curves"`
	ALPN              *[]string        `toml:"alpn"`
	ClientAuth        *string          `toml:"client_auth"`
	ClientCA          *string          `toml:"client_ca"`
	SessionTickets    *bool            `toml:"session_tickets"`
	TicketKeyRotation *duration        `toml:"ticket_key_rotation"`
	HandshakeTimeout  *duration        `toml:"handshake_timeout"`
	WatchInterval     *duration        `toml:"watch_interval"`
	OCSPStapling      *bool            `toml:"ocsp_stapling"`
	HSTS              *rawHSTS         `toml:"hsts"`
}

// rawHSTS is [virtual_server.tls.hsts].
type rawHSTS struct {
	MaxAge            *duration `toml:"max_age"`
	IncludeSubdomains *bool     `toml:"include_subdomains"`
	Preload           *bool     `toml:"preload"`
}

type rawCertificate struct {
	Cert    *string `toml:"cert"`
	Key     *string `toml:"key"`
	Default *bool   `toml:"default"`
}

type rawACME struct {
	Email         *string   `toml:"email"`
	CA            *string   `toml:"ca"`
	Domains       []string  `toml:"domains"`
	Storage       *string   `toml:"storage"`
	CARoot        *string   `toml:"ca_root"`
	Challenges    *[]string `toml:"challenges"`
	HTTPPort      *int      `toml:"http_port"`
	TLSALPNPort   *int      `toml:"tls_alpn_port"`
	OnDemand      *bool     `toml:"on_demand"`
	OnDemandAllow []string  `toml:"on_demand_allow"`

	RenewInterval      *duration `toml:"renew_interval"`
	RenewalWindowRatio *float64  `toml:"renewal_window_ratio"`
}

// rawPoolTLS is [pool.NAME.tls].
type rawPoolTLS struct {
	ServerName         *string   `toml:"server_name"`
	CA                 *string   `toml:"ca"`
	InsecureSkipVerify *bool     `toml:"insecure_skip_verify"`
	Cert               *string   `toml:"cert"`
	Key                *string   `toml:"key"`
	Profile            *string   `toml:"profile"`
	MinVersion         *string   `toml:"min_version"`
	CipherSuites       *[]string `toml:"cipher_suites"`
	Curves             *[]string `toml:"curves"`
	ALPN               *[]string `toml:"alpn"`
	HandshakeTimeout   *duration `toml:"handshake_timeout"`
	SessionResumption  *bool     `toml:"session_resumption"`
}

func (h rawHTTP) set() bool {
	return h.MaxRequests != nil || h.KeepaliveTimeout != nil || h.RequestHeaderTimeout != nil ||
		h.MaxRequestLine != nil || h.MaxHeaderBytes != nil || h.ServerResponseTimeout != nil ||
		h.ForwardedHeaders != nil || h.AddRequestHeaders != nil || h.RemoveRequestHeaders != nil ||
		h.AddResponseHeaders != nil || h.RemoveResponseHeaders != nil
}

// LoadFile reads and validates the TOML file at path. Relative file names in
// it (certificates, keys, CA bundles, ACME storage) are taken from the
// directory of path. Its problems come as an *Error naming path, one a line
// ("tether.toml:12: pool \"api\": max_idle: must be >= 0").
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := parse(b, dir)
	if e := (*Error)(nil); errors.As(err, &e) {
		e.File = path
		return nil, e
	}
	return cfg, err
}

// Parse decodes TOML strictly (an unknown key is an error naming it),
// resolves profiles, fills defaults and validates. All problems found are
// returned together as an *Error, one per line in line order, each with the
// line of its key where the file has one ("line 12: ..."): unknown keys and
// invalid values alike. Only a syntax error or a value of the wrong type
// stops the decoder, and comes alone. Relative file names are taken from the
// working directory (LoadFile takes them from the file's directory).
func Parse(b []byte) (*Config, error) { return parse(b, "") }

// parse is Parse with relative file names resolved against dir ("" = the
// working directory).
func parse(b []byte, dir string) (*Config, error) {
	var raw rawFile
	md, err := toml.NewDecoder(strings.NewReader(string(b))).Decode(&raw)
	if err != nil {
		return nil, &Error{Problems: []Problem{decodeProblem(err)}}
	}
	lines := scanKeyLines(string(b))
	// An unknown key is reported with every other problem, not alone: build
	// runs on what was decoded.
	var unknown []Problem
	nth := map[string]int{}
	for _, k := range md.Undecoded() {
		name, line := k.String(), 0
		if at := lines.byName[name]; nth[name] < len(at) {
			line = at[nth[name]]
		}
		nth[name]++
		unknown = append(unknown, Problem{Line: line, Msg: unknownKey(k)})
	}
	cfg, err := build(&raw, dir, lines)
	if len(unknown) == 0 {
		return cfg, err
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{}
	}
	e.Problems = append(unknown, e.Problems...)
	sortProblems(e.Problems)
	return nil, e
}

// decodeProblem is the problem that stopped the decoder: a syntax error, or
// a value of the wrong type (its line when the decoder says it).
func decodeProblem(err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Problem{Line: pe.Position.Line, Col: pe.Position.Col, Msg: parseMessage(pe)}
	}
	// "toml: line 5 (last key "a.b"): incompatible types: ..."
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d", &line); n == 1 {
		if _, rest, ok := strings.Cut(msg, " (last key "); ok {
			if key, rest, ok := strings.Cut(rest, "): "); ok {
				if k, err := strconv.Unquote(key); err == nil {
					return Problem{Line: line, Msg: k + ": " + rest}
				}
			}
		}
	}
	return Problem{Msg: msg}
}

func parseMessage(pe toml.ParseError) string {
	if pe.LastKey != "" {
		return fmt.Sprintf("%s: %s", pe.LastKey, pe.Message)
	}
	return pe.Message
}

// unknownKey names the key and, when one is close, the key that was meant.
func unknownKey(k toml.Key) string {
	msg := fmt.Sprintf("unknown key %q", k.String())
	if len(k) > 0 {
		if s := suggest(k[len(k)-1], knownKeys(k)); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
	}
	return msg
}

func knownKeys(k toml.Key) []string {
	switch {
	case len(k) >= 4 && k[0] == "virtual_server" && k[1] == "tls" && k[2] == "acme":
		return tagNames(rawACME{})
	case len(k) >= 4 && k[0] == "virtual_server" && k[1] == "tls" && k[2] == "hsts":
		return tagNames(rawHSTS{})
	case len(k) >= 4 && k[0] == "virtual_server" && k[1] == "tls" && k[2] == "certificates":
		return tagNames(rawCertificate{})
	case len(k) >= 3 && k[0] == "virtual_server" && k[1] == "tls":
		return tagNames(rawTLS{})
	case len(k) >= 4 && k[0] == "pool" && k[2] == "tls":
		return tagNames(rawPoolTLS{})
	case len(k) >= 3 && k[0] == "tcp_profile":
		return tagNames(rawProfile{})
	case len(k) >= 4 && k[0] == "pool" && k[2] == "health":
		return tagNames(rawHealth{})
	case len(k) >= 4 && k[0] == "pool" && k[2] == "members":
		return tagNames(rawMember{})
	case len(k) >= 3 && k[0] == "pool":
		return tagNames(rawPool{})
	case len(k) >= 3 && k[0] == "virtual_server" && k[1] == "http":
		return tagNames(rawHTTP{})
	case len(k) >= 2 && k[0] == "virtual_server":
		return tagNames(rawVirtualServer{})
	case len(k) >= 2 && k[0] == "log":
		return tagNames(rawLog{})
	case len(k) >= 2 && k[0] == "admin":
		return tagNames(rawAdmin{})
	case len(k) >= 2 && k[0] == "global":
		return tagNames(rawGlobal{})
	}
	return tagNames(rawFile{})
}

func suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(got, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// build resolves raw into a Config; relative file names are taken from dir
// ("" = the working directory), problems located with lines (nil: none).
func build(raw *rawFile, dir string, lines *keyLines) (*Config, error) {
	v := &validator{lines: lines}
	v.at("global", "global")
	v.at("log", "log")
	cfg := &Config{
		Global: Global{ShutdownTimeout: durOr(raw.Global.ShutdownTimeout, DefaultShutdownTimeout)},
		Log: Log{
			Level:  strOr(raw.Log.Level, DefaultLogLevel),
			Format: strOr(raw.Log.Format, DefaultLogFormat),
			Access: boolOr(raw.Log.Access, DefaultAccessLog),
			File:   strOr(raw.Log.File, ""),
		},
		Profiles: map[string]TCPProfile{RootProfile: DefaultProfile()},
		Pools:    map[string]Pool{},
	}
	v.nonNegative("global: shutdown_timeout", cfg.Global.ShutdownTimeout)
	v.oneOf("log: level", cfg.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log: format", cfg.Log.Format, "json", "console")
	cfg.Log.File = logFile(cfg.Log.File, dir, v)
	cfg.Admin = buildAdmin(raw.Admin, dir, v)

	// Profiles, in name order so that messages come out stable.
	r := &resolver{raw: raw.Profiles, out: cfg.Profiles, v: v, state: map[string]int{}}
	if _, ok := raw.Profiles[RootProfile]; ok {
		v.at(`tcp_profile "tcp"`, "tcp_profile", RootProfile)
		v.add(`tcp_profile "tcp"`, "", `the built-in root profile cannot be redefined; define another profile with parent = "tcp"`)
		delete(raw.Profiles, RootProfile)
	}
	for _, name := range sortedKeys(raw.Profiles) {
		r.resolve(name, nil)
	}

	for _, name := range sortedKeys(raw.Pools) {
		cfg.Pools[name] = buildPool(name, raw.Pools[name], dir, v)
	}

	vb := &vsBuilder{raw: raw, dir: dir, cfg: cfg, profiles: r, v: v, names: map[string]bool{}}
	for i, rvs := range raw.VirtualServers {
		cfg.VirtualServers = append(cfg.VirtualServers, vb.build(i, rvs))
	}
	// The root profile's own pair (F5's 1800 s keepalive, 300 s idle timeout)
	// is deliberate and documented; only profiles the file defines warn.
	warned := map[string]bool{RootProfile: true}
	for _, vs := range cfg.VirtualServers {
		for _, name := range []string{vs.ClientProfile, vs.ServerProfile} {
			if p, ok := cfg.Profiles[name]; ok && !warned[name] {
				warned[name] = true
				warnProfile(cfg, "tcp_profile "+quote(name), p)
			}
		}
	}
	cfg.Warnings = append(cfg.Warnings, v.warns...)
	if len(raw.VirtualServers) == 0 {
		cfg.Warnings = append(cfg.Warnings, "no virtual_server is defined: tether will listen on nothing")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// warnProfile records the valid but suspicious settings of a profile used by
// a virtual server.
func warnProfile(cfg *Config, path string, p TCPProfile) {
	if p.Keepalive && p.IdleTimeout > 0 && p.KeepaliveIdle >= p.IdleTimeout {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf(
			"%s: keepalive_idle (%s) >= idle_timeout (%s): the idle timeout closes the connection before the first keepalive probe, so keepalive can never fire",
			path, p.KeepaliveIdle, p.IdleTimeout))
		return
	}
	probing := p.KeepaliveIdle + time.Duration(p.KeepaliveProbes)*p.KeepaliveInterval
	if p.Keepalive && p.UserTimeout == 0 && p.IdleTimeout > 0 && probing > p.IdleTimeout {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf(
			"%s: keepalive needs %s (keepalive_idle + keepalive_probes x keepalive_interval) to declare a silent peer dead, longer than idle_timeout (%s), and user_timeout is 0: "+
				"a peer that vanishes with data in flight is retried by the kernel for ~15 min (keepalive never probes unacknowledged data); "+
				"set user_timeout below idle_timeout, or shorten the probing",
			path, probing, p.IdleTimeout))
	}
	if p.Keepalive && p.UserTimeout > probing && p.KeepaliveInterval > 0 {
		// Once TCP_USER_TIMEOUT is set, tcp_keepalive_timer drops a
		// silent peer at the first probe tick (idle + k x interval, after
		// at least one probe) at or after it, and no longer counts probes.
		k := max(1, (p.UserTimeout-p.KeepaliveIdle+p.KeepaliveInterval-1)/p.KeepaliveInterval)
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf(
			"%s: user_timeout (%s) is longer than keepalive_idle + keepalive_probes x keepalive_interval (%s): once user_timeout is set Linux no longer counts probes, "+
				"so a silent idle peer is dropped only at the first probe at or after user_timeout (%s), not after %d probes",
			path, p.UserTimeout, probing, p.KeepaliveIdle+k*p.KeepaliveInterval, p.KeepaliveProbes))
	}
}

// validator collects every problem (errs) and every valid-but-suspicious
// setting (warns), each with its path; a problem gets the line of its key
// (or else of its table) when at has said which table the path is.
type validator struct {
	errs  []Problem
	warns []string

	lines  *keyLines           // nil: no lines
	places map[string][]string // message path (`pool "p": health`) -> place (pool, p, health)
}

// at says that path (`virtual_server "web"`) is the table at place
// (virtual_server, 0); under says it of a table within an earlier one.
func (v *validator) at(path string, place ...string) {
	if v.places == nil {
		v.places = map[string][]string{}
	}
	v.places[path] = place
}

func (v *validator) under(path, parent string, more ...string) {
	if p, ok := v.places[parent]; ok {
		v.at(path, append(slices.Clone(p), more...)...)
	}
}

// line returns the line of key (its first word: `listen "x"` is listen) in
// the table of path, else of the table itself, else 0.
func (v *validator) line(path, key string) int {
	place, ok := v.places[path]
	if v.lines == nil || !ok {
		return 0
	}
	if name, _, _ := strings.Cut(key, " "); name != "" {
		if l := v.lines.line(loc(append(slices.Clone(place), name)...)); l > 0 {
			return l
		}
	}
	return v.lines.line(loc(place...))
}

func (v *validator) warn(path, key, msg string) {
	if key == "" {
		v.warns = append(v.warns, path+": "+msg)
		return
	}
	v.warns = append(v.warns, path+": "+key+": "+msg)
}

func (v *validator) add(path, key, msg string) {
	p := Problem{Line: v.line(path, key), Msg: path + ": " + key + ": " + msg}
	if key == "" {
		p.Msg = path + ": " + msg
	}
	v.errs = append(v.errs, p)
}

func (v *validator) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	i := strings.LastIndex(key, ": ")
	v.add(key[:i], key[i+2:], fmt.Sprintf("%q is not one of %s", got, strings.Join(allowed, " | ")))
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		i := strings.LastIndex(key, ": ")
		v.add(key[:i], key[i+2:], "must be >= 0")
	}
}

// err returns every problem as an *Error, or nil.
func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	ps := slices.Clone(v.errs)
	sortProblems(ps)
	return &Error{Problems: ps}
}

// resolver resolves profiles through their parents with cycle detection.
type resolver struct {
	raw    map[string]rawProfile
	out    map[string]TCPProfile
	v      *validator
	state  map[string]int // 1 = resolving, 2 = done
	failed map[string]bool
}

func (r *resolver) fail(name string) {
	if r.failed == nil {
		r.failed = map[string]bool{}
	}
	r.failed[name] = true
}

// resolve returns the resolved profile and whether it resolved cleanly.
func (r *resolver) resolve(name string, chain []string) (TCPProfile, bool) {
	if p, ok := r.out[name]; ok {
		return p, true
	}
	path := fmt.Sprintf("tcp_profile %q", name)
	r.v.at(path, "tcp_profile", name)
	if name == RootProfile {
		// Only reached when the file defines [tcp_profile.tcp].
		return TCPProfile{}, false
	}
	switch r.state[name] {
	case 1:
		cycle := append(append([]string{}, chain...), name)
		i := 0
		for cycle[i] != name {
			i++
		}
		r.v.add(path, "parent", "inheritance cycle: "+strings.Join(cycle[i:], " -> "))
		r.fail(name)
		return TCPProfile{}, false
	case 2:
		return TCPProfile{}, false // failed before
	}
	rp, ok := r.raw[name]
	if !ok {
		return TCPProfile{}, false
	}
	r.state[name] = 1
	defer func() { r.state[name] = 2 }()

	parentName := strOr(rp.Parent, RootProfile)
	var parent TCPProfile
	if parentName == RootProfile {
		parent = r.out[RootProfile]
	} else if _, defined := r.raw[parentName]; !defined {
		r.v.add(path, fmt.Sprintf("parent %q", parentName), "is not defined")
		r.fail(name)
		return TCPProfile{}, false
	} else if parent, ok = r.resolve(parentName, append(chain, name)); !ok {
		r.fail(name)
		return TCPProfile{}, false
	}

	p := parent
	p.Name = name
	p.Parent = parentName
	setBool(&p.Keepalive, rp.Keepalive)
	setDur(&p.KeepaliveIdle, rp.KeepaliveIdle)
	setDur(&p.KeepaliveInterval, rp.KeepaliveInterval)
	setInt(&p.KeepaliveProbes, rp.KeepaliveProbes)
	setDur(&p.IdleTimeout, rp.IdleTimeout)
	setDur(&p.HalfCloseTimeout, rp.HalfCloseTimeout)
	setBool(&p.ResetOnTimeout, rp.ResetOnTimeout)
	setDur(&p.UserTimeout, rp.UserTimeout)
	setBool(&p.NoDelay, rp.NoDelay)
	if rp.Close != nil {
		p.Close = CloseMode(*rp.Close)
	}
	setDur(&p.DrainTimeout, rp.DrainTimeout)
	setDur(&p.FinWait2Timeout, rp.FinWait2Timeout)
	setInt(&p.SendBuffer, rp.SendBuffer)
	setInt(&p.RecvBuffer, rp.RecvBuffer)
	setBool(&p.ReusePort, rp.ReusePort)
	setDur(&p.DeferAccept, rp.DeferAccept)
	setInt(&p.FastOpen, rp.FastOpen)
	setInt(&p.Backlog, rp.Backlog)

	n := len(r.v.errs)
	validateProfile(r.v, path, p)
	if len(r.v.errs) > n {
		r.fail(name)
		return TCPProfile{}, false
	}
	r.out[name] = p
	return p, true
}

func validateProfile(v *validator, path string, p TCPProfile) {
	if p.Name == RootProfile {
		return
	}
	wholeSeconds := func(key string, d time.Duration, min time.Duration) {
		switch {
		case d < min:
			v.add(path, key, fmt.Sprintf("must be >= %s", min))
		case d%time.Second != 0:
			v.add(path, key, fmt.Sprintf("%s: the kernel takes whole seconds", d))
		case d > 32767*time.Second:
			v.add(path, key, "must be <= 32767s (the kernel's limit)")
		}
	}
	wholeSeconds("keepalive_idle", p.KeepaliveIdle, time.Second)
	wholeSeconds("keepalive_interval", p.KeepaliveInterval, time.Second)
	if p.KeepaliveProbes < 1 || p.KeepaliveProbes > 127 {
		v.add(path, "keepalive_probes", "must be between 1 and 127")
	}
	if p.IdleTimeout < 0 {
		v.add(path, "idle_timeout", "must be >= 0 (0 = never)")
	}
	if p.HalfCloseTimeout < 0 {
		v.add(path, "half_close_timeout", "must be >= 0 (0 = the idle timeout)")
	}
	switch {
	case p.UserTimeout < 0:
		v.add(path, "user_timeout", "must be >= 0 (0 = kernel default)")
	case p.UserTimeout%time.Millisecond != 0:
		v.add(path, "user_timeout", "the kernel takes whole milliseconds")
	case p.UserTimeout > time.Duration(1<<31-1)*time.Millisecond:
		v.add(path, "user_timeout", "too large")
	}
	switch p.Close {
	case CloseGraceful, CloseReset, CloseDrainReset:
	default:
		v.add(path, "close", fmt.Sprintf("%q is not one of graceful | reset | drain-reset", string(p.Close)))
	}
	if p.DrainTimeout <= 0 {
		v.add(path, "drain_timeout", "must be > 0")
	}
	if p.FinWait2Timeout < 0 {
		v.add(path, "fin_wait2_timeout", "must be >= 0 (0 = kernel default)")
	} else if p.FinWait2Timeout > 120*time.Second {
		v.add(path, "fin_wait2_timeout", "must be <= 120s (the kernel caps TCP_LINGER2 there)")
	} else if p.FinWait2Timeout > 0 {
		wholeSeconds("fin_wait2_timeout", p.FinWait2Timeout, time.Second)
	}
	if p.SendBuffer < 0 || p.SendBuffer > 1<<30 {
		v.add(path, "send_buffer", "must be between 0 (autotuning) and 1073741824")
	}
	if p.RecvBuffer < 0 || p.RecvBuffer > 1<<30 {
		v.add(path, "recv_buffer", "must be between 0 (autotuning) and 1073741824")
	}
	if p.DeferAccept < 0 {
		v.add(path, "defer_accept", "must be >= 0 (0 = off)")
	} else if p.DeferAccept > 0 {
		wholeSeconds("defer_accept", p.DeferAccept, time.Second)
	}
	if p.FastOpen < 0 {
		v.add(path, "fastopen", "must be >= 0 (0 = off)")
	}
	if p.Backlog < 1 || p.Backlog > 1<<20 {
		v.add(path, "backlog", "must be between 1 and 1048576")
	}
}

// checkHostPort accepts "host:port" with a numeric port 1..65535 (0 too when
// zeroOK: a listener on port 0 gets a free port). The host may be a name
// (resolved when connecting) or empty on listeners (all addresses).
func checkHostPort(s string, zeroOK bool) error {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return errors.New("missing port (want host:port)")
	}
	host, port := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return errors.New("unbalanced brackets around an IPv6 address")
	}
	if strings.Contains(strings.Trim(host, "[]"), ":") && !strings.HasPrefix(host, "[") {
		return errors.New("an IPv6 address needs brackets: [addr]:port")
	}
	n := 0
	if port == "" {
		return errors.New("missing port (want host:port)")
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return fmt.Errorf("port %q is not a number", port)
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			break
		}
	}
	if (n == 0 && !zeroOK) || n > 65535 {
		return fmt.Errorf("port %s is out of range 1-65535", port)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func strOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func floatOr(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

func durOr(p *duration, def time.Duration) time.Duration {
	if p == nil {
		return def
	}
	return p.d
}

func setBool(dst *bool, p *bool) {
	if p != nil {
		*dst = *p
	}
}

func setInt(dst *int, p *int) {
	if p != nil {
		*dst = *p
	}
}

func setDur(dst *time.Duration, p *duration) {
	if p != nil {
		*dst = p.d
	}
}

// parseStatusRange parses "200" or "200-399".
func parseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = strconv.Atoi(a); err != nil || lo < 100 || lo > 599 {
		return 0, 0, errors.New(`want a status or a range like "200-399" (100-599)`)
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil || hi < lo || hi > 599 {
			return 0, 0, errors.New(`want a status or a range like "200-399" (100-599)`)
		}
	}
	return lo, hi, nil
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// logFile resolves [log] file against dir. The file itself is opened by
// run (check must not create it); a directory is refused here.
func logFile(name, dir string, v *validator) string {
	if name == "" {
		return ""
	}
	if dir != "" && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		v.add("log", "file", fmt.Sprintf("%q is a directory", name))
	}
	return name
}

// buildAdmin resolves [admin]: the default listen address, "off" as "",
// token_file taken from dir. A listen address must be host:port with a
// port, and one that is not loopback needs a token file.
func buildAdmin(ra rawAdmin, dir string, v *validator) Admin {
	v.at("admin", "admin")
	a := Admin{Listen: strOr(ra.Listen, DefaultAdminListen), TokenFile: strOr(ra.TokenFile, ""), ListenDefault: ra.Listen == nil}
	if a.Listen == "off" {
		a.Listen = ""
	}
	if a.TokenFile != "" && dir != "" && !filepath.IsAbs(a.TokenFile) {
		a.TokenFile = filepath.Join(dir, a.TokenFile)
	}
	if a.Listen == "" {
		return a
	}
	if err := checkHostPort(a.Listen, true); err != nil {
		v.add("admin", "listen", fmt.Sprintf("%q: %v", a.Listen, err))
		return a
	}
	if a.TokenFile == "" && !LoopbackListen(a.Listen) {
		v.add("admin", "listen", fmt.Sprintf("%q is not a loopback address: set token_file, or listen on 127.0.0.1 or [::1]", a.Listen))
	}
	return a
}

// LoopbackListen reports whether host:port listens on loopback only
// ("localhost" included; an empty host means every address).
func LoopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
