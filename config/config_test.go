package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const base = `
[pool.p]
members = [{ address = "127.0.0.1:6379" }]
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:7379"
pool = "p"
`

func TestDefaultsFilledEverywhere(t *testing.T) {
	cfg, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	vs := cfg.VirtualServers[0]
	if vs.Mode != ModeTCP || vs.ClientProfile != RootProfile || vs.ServerProfile != RootProfile || vs.MaxConnections != DefaultVSMaxConnections {
		t.Fatalf("virtual server defaults not applied: %+v", vs)
	}
	if d := DefaultProfile(); !d.ResetOnTimeout || d.HalfCloseTimeout != 0 {
		t.Fatalf("root profile: reset_on_timeout must default on (F5) and half_close_timeout to 0: %+v", d)
	}
	if got, want := cfg.Client(vs), DefaultProfile(); got != want {
		t.Fatalf("root profile = %+v, want %+v", got, want)
	}
	p := cfg.Pools["p"]
	if p.Method != MethodRoundRobin || p.ConnectTimeout != DefaultConnectTimeout || p.Health != DefaultHealth() {
		t.Fatalf("pool defaults not applied: %+v", p)
	}
	if m := p.Members[0]; m.Weight != 1 || m.State != StateEnabled || m.MaxConnections != 0 {
		t.Fatalf("member defaults not applied: %+v", m)
	}
	if cfg.Global.ShutdownTimeout != DefaultShutdownTimeout || cfg.Log.Level != "info" || !cfg.Log.Access {
		t.Fatalf("global/log defaults not applied: %+v %+v", cfg.Global, cfg.Log)
	}
}

func TestProfileInheritsOnlyWhatIsSet(t *testing.T) {
	cfg, err := Parse([]byte(`
[tcp_profile.base]
keepalive_idle = "60s"
close = "reset"
[tcp_profile.child]
parent = "base"
keepalive_interval = "5s"
nodelay = false
[tcp_profile.grandchild]
parent = "child"
close = "drain-reset"
` + base))
	if err != nil {
		t.Fatal(err)
	}
	gc := cfg.Profiles["grandchild"]
	if gc.KeepaliveIdle != 60*time.Second || gc.KeepaliveInterval != 5*time.Second || gc.NoDelay ||
		gc.Close != CloseDrainReset || gc.KeepaliveProbes != 9 || gc.IdleTimeout != 300*time.Second {
		t.Fatalf("grandchild resolved wrong: %+v", gc)
	}
	if c := cfg.Profiles["child"]; c.Close != CloseReset || c.Parent != "base" {
		t.Fatalf("child resolved wrong: %+v", c)
	}
	if b := cfg.Profiles["base"]; b.Parent != RootProfile || !b.NoDelay {
		t.Fatalf("base resolved wrong: %+v", b)
	}
}

func TestBadConfigNamesKeyAndReason(t *testing.T) {
	cases := []struct {
		name, toml string
		want       []string
	}{
		{"unknown key", `[tcp_profile.lan]
keepalve = true
` + base, []string{`unknown key "tcp_profile.lan.keepalve"`, `did you mean "keepalive"`}},
		{"unknown top-level table", "[virtual_servers]\nx = 1\n" + base, []string{`unknown key "virtual_servers.x"`}},
		{"unknown member key", `[pool.q]
members = [{ adress = "127.0.0.1:1" }]
` + base, []string{`unknown key "pool.q.members.adress"`, `"address"`}},
		{"bad duration", `[tcp_profile.lan]
idle_timeout = "5 minutes"
` + base, []string{"line 2", "idle_timeout", `invalid duration "5 minutes"`}},
		{"integer duration", `[tcp_profile.lan]
idle_timeout = 300
` + base, []string{"line 2", "idle_timeout", `invalid duration "300"`}},
		{"syntax error has line and column", "[log]\nlevel = = 1\n" + base, []string{"line 2, column"}},
		{"unknown client profile", base + `client_profile = "wan"`, []string{`virtual_server "vs": client_profile "wan": is not defined`}},
		{"unknown server profile", base + `server_profile = "x"`, []string{`virtual_server "vs": server_profile "x": is not defined`}},
		{"unknown pool", strings.Replace(base, `pool = "p"`, `pool = "nope"`, 1), []string{`virtual_server "vs": pool "nope": is not defined`}},
		{"parent cycle", `[tcp_profile.a]
parent = "b"
[tcp_profile.b]
parent = "a"
` + base, []string{`parent: inheritance cycle: a -> b -> a`}},
		{"self parent", `[tcp_profile.a]
parent = "a"
` + base, []string{`tcp_profile "a": parent: inheritance cycle: a -> a`}},
		{"unknown parent", `[tcp_profile.a]
parent = "zz"
` + base, []string{`tcp_profile "a": parent "zz": is not defined`}},
		{"redefine root", `[tcp_profile.tcp]
nodelay = false
` + base, []string{`tcp_profile "tcp": the built-in root profile cannot be redefined`}},
		{"keepalive interval zero", `[tcp_profile.lan]
keepalive_interval = "0s"
` + base, []string{`tcp_profile "lan": keepalive_interval: must be >= 1s`}},
		{"keepalive idle fraction", `[tcp_profile.lan]
keepalive_idle = "1.5s"
` + base, []string{`tcp_profile "lan": keepalive_idle: 1.5s: the kernel takes whole seconds`}},
		{"probes out of range", `[tcp_profile.lan]
keepalive_probes = 0
` + base, []string{`keepalive_probes: must be between 1 and 127`}},
		{"bad close mode", `[tcp_profile.lan]
close = "abort"
` + base, []string{`tcp_profile "lan": close: "abort" is not one of graceful | reset | drain-reset`}},
		{"negative half-close timeout", `[tcp_profile.lan]
half_close_timeout = "-2s"
` + base, []string{`tcp_profile "lan": half_close_timeout: must be >= 0`}},
		{"negative idle timeout", `[tcp_profile.lan]
idle_timeout = "-1s"
` + base, []string{`idle_timeout: must be >= 0`}},
		{"linger2 above the kernel cap", `[tcp_profile.lan]
fin_wait2_timeout = "300s"
` + base, []string{`tcp_profile "lan": fin_wait2_timeout: must be <= 120s`}},
		{"bad method", strings.Replace(base, "[pool.p]", "[pool.p]\nmethod = \"fastest\"", 1), []string{`pool "p": method: "fastest" is not one of`}},
		{"member without port", `[pool.q]
members = [{ address = "127.0.0.1" }]
` + base, []string{`pool "q": member 1: address "127.0.0.1": missing port`}},
		{"member port out of range", `[pool.q]
members = [{ address = "127.0.0.1:70000" }]
` + base, []string{`pool "q": member 1: address "127.0.0.1:70000": port 70000 is out of range`}},
		{"duplicate member", `[pool.q]
members = [{ address = "127.0.0.1:1" }, { address = "127.0.0.1:1" }]
` + base, []string{`pool "q": member 2: address "127.0.0.1:1": is also member 1`}},
		{"zero weight", `[pool.q]
members = [{ address = "127.0.0.1:1", weight = 0 }]
` + base, []string{`pool "q": member 1: weight: must be >= 1`}},
		{"empty pool", "[pool.q]\nmethod = \"random-two\"\n" + base, []string{`pool "q": members: at least one member is required`}},
		{"health timeout above interval", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n[[virtual_server]]", 1),
			[]string{`pool "p": health: timeout: must be <= interval (1s)`}},
		{"http health field on tcp type", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\npath = \"/ping\"\n[[virtual_server]]", 1),
			[]string{`pool "p": health: type: method, path, host and expect_status need type = "http"`}},
		{"bad expect_status", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ntype = \"http\"\nexpect_status = \"2xx\"\n[[virtual_server]]", 1),
			[]string{`pool "p": health: expect_status "2xx": want a status or a range`}},
		{"inverted expect_status", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ntype = \"http\"\nexpect_status = \"399-200\"\n[[virtual_server]]", 1),
			[]string{`expect_status "399-200"`}},
		{"bad health path", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ntype = \"http\"\npath = \"ping me\"\n[[virtual_server]]", 1),
			[]string{`pool "p": health: path "ping me": must start with /`}},
		{"bad health method", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ntype = \"http\"\nmethod = \"GE T\"\n[[virtual_server]]", 1),
			[]string{`pool "p": health: method "GE T": is not an HTTP method token`}},
		{"missing name", strings.Replace(base, `name = "vs"`, "", 1), []string{`virtual_server 1: name: is required`}},
		{"duplicate listen", base + strings.Replace(base[strings.Index(base, "[[virtual_server]]"):], `"vs"`, `"vs2"`, 1),
			[]string{`virtual_server "vs2": listen "127.0.0.1:7379": is also the address of virtual_server "vs"`}},
		{"bad mode", base + `mode = "udp"`, []string{`virtual_server "vs": mode: "udp" is not a mode`}},
		{"negative max connections", base + `max_connections = -1`, []string{`virtual_server "vs": max_connections: must be >= 0`}},
		{"bad log level", "[log]\nlevel = \"loud\"\n" + base, []string{`log: level: "loud" is not one of`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.toml))
			if err == nil {
				t.Fatalf("accepted, want an error containing %q; got %+v", tc.want, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	_, err := Parse([]byte(`[tcp_profile.lan]
keepalive_probes = 0
close = "x"
` + base + `client_profile = "missing"`))
	if err == nil {
		t.Fatal("accepted")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n < 3 {
		t.Fatalf("want every problem reported, got %d line(s): %v", n, err)
	}
}

func TestWarnsWhenKeepaliveCanNeverFire(t *testing.T) {
	cfg, err := Parse([]byte(`[tcp_profile.lan]
keepalive_idle = "60s"
idle_timeout = "30s"
[tcp_profile.ok]
keepalive_idle = "10s"
keepalive_interval = "5s"
keepalive_probes = 3
idle_timeout = "30s"
[tcp_profile.slowprobes]
keepalive_idle = "10s"
idle_timeout = "30s"
[tcp_profile.bounded]
keepalive_idle = "10s"
idle_timeout = "30s"
user_timeout = "20s"
` + base + `client_profile = "lan"
server_profile = "ok"
[[virtual_server]]
name = "vs2"
listen = "127.0.0.1:0"
pool = "p"
client_profile = "slowprobes"
server_profile = "bounded"`))
	if err != nil {
		t.Fatal(err)
	}
	var lan, ok, slow, bounded int
	for _, w := range cfg.Warnings {
		if strings.Contains(w, `tcp_profile "lan"`) && strings.Contains(w, "keepalive can never fire") {
			lan++
		}
		if strings.Contains(w, `tcp_profile "ok"`) {
			ok++
		}
		if strings.Contains(w, `tcp_profile "slowprobes"`) && strings.Contains(w, "keepalive needs 11m25s") && strings.Contains(w, "user_timeout is 0") {
			slow++
		}
		if strings.Contains(w, `tcp_profile "bounded"`) {
			bounded++
		}
	}
	if lan != 1 || ok != 0 || slow != 1 || bounded != 0 {
		t.Fatalf("want one warning each for lan and slowprobes, none for ok and bounded (user_timeout set), got %q", cfg.Warnings)
	}
}

// With user_timeout set, Linux drops a silent idle peer at the first probe
// at or after it and counts no probes: a user_timeout longer than the
// probing makes detection later than the probes say, which check warns of
// with the figure the kernel will use (the fault suite measured the rule).
func TestWarnsWhenUserTimeoutOutlastsTheProbes(t *testing.T) {
	base := "[pool.p]\nmembers = [{ address = \"127.0.0.1:1\" }]\n[[virtual_server]]\nname = \"vs\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n"
	cfg, err := Parse([]byte(`[tcp_profile.late]
keepalive_idle = "1s"
keepalive_interval = "2s"
keepalive_probes = 2
user_timeout = "8s"
idle_timeout = "0s"
[tcp_profile.early]
keepalive_idle = "2s"
keepalive_interval = "1s"
keepalive_probes = 3
user_timeout = "4s"
idle_timeout = "0s"
` + base + `client_profile = "late"
server_profile = "early"`))
	if err != nil {
		t.Fatal(err)
	}
	var late, early int
	for _, w := range cfg.Warnings {
		if strings.Contains(w, `tcp_profile "late"`) && strings.Contains(w, "user_timeout (8s) is longer") && strings.Contains(w, "(9s), not after 2 probes") {
			late++
		}
		if strings.Contains(w, `tcp_profile "early"`) {
			early++
		}
	}
	if late != 1 || early != 0 {
		t.Fatalf("want one warning for late (dropped at 9 s, not 5 s) and none for early, got %q", cfg.Warnings)
	}
}

func TestEffectiveRoundTrips(t *testing.T) {
	cfg, err := Parse([]byte(`[tcp_profile.lan]
keepalive_idle = "60s"
idle_timeout = "90s"
close = "drain-reset"
` + base + `client_profile = "lan"`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Effective(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The printed config must itself be a valid config meaning the same thing,
	// except that the root profile is printed for reference.
	out = strings.Replace(out, "[tcp_profile.tcp]", "[tcp_profile.root_copy]", 1)
	again, err := Parse([]byte(out))
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, out)
	}
	if a, b := again.Profiles["lan"], cfg.Profiles["lan"]; a != b {
		t.Fatalf("lan differs after round trip:\n%+v\n%+v", a, b)
	}
	if len(again.VirtualServers) != 1 || again.VirtualServers[0] != cfg.VirtualServers[0] {
		t.Fatalf("virtual servers differ after round trip")
	}
}

func TestDefaultsPrintsRootProfile(t *testing.T) {
	out, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[tcp_profile.tcp]", `keepalive_idle = "30m0s"`, `idle_timeout = "5m0s"`, "keepalive_probes = 9", `connect_timeout = "3s"`, "backlog = 4096"} {
		if !strings.Contains(out, want) {
			t.Errorf("defaults lack %q:\n%s", want, out)
		}
	}
}

func TestRelayTimeoutsAreShorterNonZero(t *testing.T) {
	p := func(d time.Duration) TCPProfile { return TCPProfile{IdleTimeout: d, HalfCloseTimeout: 2 * d} }
	for _, c := range []struct{ a, b, want time.Duration }{
		{0, 0, 0}, {0, 5, 5}, {5, 0, 5}, {3, 5, 3}, {7, 5, 5},
	} {
		if got := RelayIdleTimeout(p(c.a), p(c.b)); got != c.want {
			t.Errorf("RelayIdleTimeout(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := RelayHalfCloseTimeout(p(c.a), p(c.b)); got != 2*c.want {
			t.Errorf("RelayHalfCloseTimeout(%v, %v) = %v, want %v", 2*c.a, 2*c.b, got, 2*c.want)
		}
	}
}

func TestLoadFileNamesThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("[log]\nlevel = = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2:9: ") {
		t.Fatalf("want error starting with the path and line, got %v", err)
	}
}

// Every key of the schema appears in the README's configuration reference.
func TestEveryKeyIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(readme)
	if i := strings.Index(ref, "## Configuration reference"); i >= 0 {
		ref = ref[i:]
	} else {
		t.Fatal("README has no configuration reference")
	}
	for _, v := range []any{rawGlobal{}, rawLog{}, rawAdmin{}, rawProfile{}, rawPool{}, rawMember{}, rawHealth{}, rawVirtualServer{}, rawHTTP{}} {
		for _, k := range tagNames(v) {
			if !strings.Contains(ref, "`"+k+"`") {
				t.Errorf("key %q (%T) is not in the README's configuration reference", k, v)
			}
		}
	}
	// The TLS tables share key names (cert, key, ca, alpn ...), so each key
	// must appear in its own subsection; acme's are written `acme.KEY`.
	for _, sec := range []struct {
		heading, prefix string
		v               any
	}{
		{"### `[virtual_server.tls]`", "", rawTLS{}},
		{"### `[virtual_server.tls]`", "", rawCertificate{}},
		{"### `[virtual_server.tls]`", "acme.", rawACME{}},
		{"### `[virtual_server.tls]`", "hsts.", rawHSTS{}},
		{"### `[pool.NAME.tls]`", "", rawPoolTLS{}},
	} {
		i := strings.Index(ref, sec.heading+"\n")
		if i < 0 {
			t.Errorf("the configuration reference has no %s subsection", sec.heading)
			continue
		}
		text := ref[i+len(sec.heading):]
		if j := strings.Index(text, "\n#"); j >= 0 {
			text = text[:j]
		}
		for _, k := range tagNames(sec.v) {
			if !strings.Contains(text, "`"+sec.prefix+k+"`") {
				t.Errorf("key %q (%T) is not in the README's %s subsection", sec.prefix+k, sec.v, sec.heading)
			}
		}
	}
}

func TestHTTPHealthDefaultsAndRange(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(base, "[[virtual_server]]", `[pool.p.health]
type = "http"
path = "/healthz"
expect_status = "204"
[[virtual_server]]`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Pools["p"].Health
	if h.Method != "GET" || h.Path != "/healthz" || h.StatusMin != 204 || h.StatusMax != 204 || h.Host != "" {
		t.Fatalf("http health resolved wrong: %+v", h)
	}
	cfg, err = Parse([]byte(strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ntype = \"http\"\n[[virtual_server]]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Pools["p"].Health; h.Path != "/" || h.StatusMin != 200 || h.StatusMax != 399 {
		t.Fatalf("http health defaults wrong: %+v", h)
	}
}

func TestHTTPModeDefaultsAndValidation(t *testing.T) {
	cfg, err := Parse([]byte(base + "mode = \"http\"\n[virtual_server.http]\nmax_requests = 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.VirtualServers[0].HTTP
	want := DefaultHTTP()
	want.MaxRequests = 7
	if h == nil || !reflect.DeepEqual(*h, want) {
		t.Fatalf("http block = %+v, want %+v", h, want)
	}
	if r := cfg.Pools["p"].Reuse; r != DefaultReuse() {
		t.Fatalf("pool reuse = %+v, want defaults", r)
	}
	if cfg, err := Parse([]byte(base)); err != nil || cfg.VirtualServers[0].HTTP != nil {
		t.Fatalf("tcp mode must have no http block: %v %+v", err, cfg)
	}
	for _, tc := range []struct{ text, want string }{
		{base + "[virtual_server.http]\nmax_requests = 7\n", `virtual_server "vs": http: applies to mode = "http" only`},
		{base + "mode = \"http\"\n[virtual_server.http]\nkeepalive_timeout = \"0s\"\n", `virtual_server "vs": http: keepalive_timeout: must be > 0`},
		{base + "mode = \"http\"\n[virtual_server.http]\nmax_header_bytes = 10\n", `http: max_header_bytes: must be between`},
		{strings.Replace(base, "[pool.p]", "[pool.p]\nreuse = \"sometimes\"", 1), `pool "p": reuse: "sometimes" is not one of shared | per-client | never`},
		{strings.Replace(base, "[pool.p]", "[pool.p]\nmax_idle = -1", 1), `pool "p": max_idle: must be >= 0`},
		{base + "mode = \"http\"\n[virtual_server.http]\nmax_request = 7\n", `unknown key "virtual_server.http.max_request" (did you mean "max_requests"?)`},
		{base + "mode = \"http\"\n[virtual_server.http]\nadd_request_headers = { \"Bad Name\" = \"x\" }\n", `http: add_request_headers: "Bad Name" is not a header name`},
		{base + "mode = \"http\"\n[virtual_server.http]\nadd_response_headers = { \"Content-Length\" = \"1\" }\n", `add_response_headers: "Content-Length" is not a header name`},
		{base + "mode = \"http\"\n[virtual_server.http]\nremove_request_headers = [\"Host\"]\n", `remove_request_headers: "Host" is not a header name`},
		{base + "mode = \"http\"\n[virtual_server.http]\nadd_request_headers = { \"X-A\" = \"a\\r\\nEvil: 1\" }\n", `the value of "X-A" holds CR, LF or NUL`},
	} {
		_, err := Parse([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}
}

func TestWarmPoolAndJitterKeys(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(base, "[pool.p]", "[pool.p]\nmin_idle = 4\nage_jitter = 0.25\nmax_age = \"600s\"\npeek_interval = \"250ms\"\nretire_wait = \"5s\"\nnon_idempotent_safe_idle = \"0s\"\nnon_idempotent_fallback = \"reuse\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Pools["p"]; p.MinIdle != 4 || p.AgeJitter != 0.25 || p.MaxAge != 600*time.Second ||
		p.PeekInterval != 250*time.Millisecond || p.RetireWait != 5*time.Second ||
		p.NonIdempotentSafeIdle != 0 || p.NonIdempotentFallback != FallbackReuse {
		t.Fatalf("pool = %+v", p.Reuse)
	}
	for _, tc := range []struct{ extra, want string }{
		{"min_idle = 40", `pool "p": min_idle: must be between 0 and max_idle (32)`},
		{"age_jitter = 1.0", `pool "p": age_jitter: must be in [0, 1)`},
		{"min_idle = -1", `pool "p": min_idle: must be between 0 and max_idle (32)`},
		{"queue_timeout = \"-1s\"", `pool "p": queue_timeout: must be >= 0`},
		{"keepalive_margin = \"-1s\"", `pool "p": keepalive_margin: must be >= 0`},
		{"peek_interval = \"0s\"", `pool "p": peek_interval: must be > 0`},
		{"retire_wait = \"0s\"", `pool "p": retire_wait: must be > 0`},
		{"non_idempotent_safe_idle = \"-1s\"", `pool "p": non_idempotent_safe_idle: must be >= 0`},
		{"non_idempotent_fallback = \"wait\"", `pool "p": non_idempotent_fallback: "wait" is not one of dial | reuse`},
	} {
		if _, err := Parse([]byte(strings.Replace(base, "[pool.p]", "[pool.p]\n"+tc.extra, 1))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want %q, got %v", tc.extra, tc.want, err)
		}
	}
}

// twoListeners is a config with virtual servers "a" and "b" on listen values
// a and b; reuse names the ones whose client profile sets reuse_port.
func twoListeners(a, b string, reuse ...string) string {
	text := "[tcp_profile.shared]\nreuse_port = true\n[pool.p]\nmembers = [{ address = \"127.0.0.1:6379\" }]\n"
	for _, vs := range []struct{ name, listen string }{{"a", a}, {"b", b}} {
		text += fmt.Sprintf("[[virtual_server]]\nname = %q\nlisten = %q\npool = \"p\"\n", vs.name, vs.listen)
		if slices.Contains(reuse, vs.name) {
			text += "client_profile = \"shared\"\n"
		}
	}
	return text
}

// Listeners that cannot bind side by side (what Linux refuses with "address
// already in use", see bindAddr) fail check, naming both virtual servers and
// listen values; those that can pass.
func TestOverlappingListenersAreCaught(t *testing.T) {
	const inUse = `so the second fails with "address already in use"`
	for _, tc := range []struct {
		name, a, b string
		reuse      []string
		want       string // "" = accepted
	}{
		{"same address twice", "127.0.0.1:80", "127.0.0.1:80", nil,
			`virtual_server "b": listen "127.0.0.1:80": is also the address of virtual_server "a" (listen "127.0.0.1:80"): both bind 127.0.0.1:80, ` + inUse},
		{"localhost is 127.0.0.1", "127.0.0.1:80", "localhost:80", nil,
			`virtual_server "b": listen "localhost:80": is also the address of virtual_server "a" (listen "127.0.0.1:80"): both bind 127.0.0.1:80`},
		{"LOCALHOST. is localhost", "localhost:80", "LOCALHOST.:80", nil, `both bind 127.0.0.1:80`},
		{"IPv4-mapped is IPv4", "[::ffff:127.0.0.1]:80", "127.0.0.1:80", nil, `both bind 127.0.0.1:80`},
		{"the same IPv6 address written twice ways", "[::1]:80", "[0:0::1]:80", nil, `both bind [::1]:80`},
		{"the same name twice", "proxy.example:80", "Proxy.Example:80", nil, `both bind proxy.example:80`},
		{"0.0.0.0 beside 127.0.0.1", "0.0.0.0:80", "127.0.0.1:80", nil,
			`virtual_server "b": listen "127.0.0.1:80": overlaps virtual_server "a" (listen "0.0.0.0:80"): a wildcard takes port 80 on every address`},
		{"127.0.0.2 before 0.0.0.0", "127.0.0.2:80", "0.0.0.0:80", nil,
			`virtual_server "b": listen "0.0.0.0:80": overlaps virtual_server "a" (listen "127.0.0.2:80")`},
		{"0.0.0.0 beside localhost", "0.0.0.0:80", "localhost:80", nil, `listen "localhost:80": overlaps virtual_server "a" (listen "0.0.0.0:80")`},
		{"0.0.0.0 beside ::1 (Go binds it dual-stack)", "0.0.0.0:80", "[::1]:80", nil, `listen "[::1]:80": overlaps`},
		{"[::] beside 127.0.0.1", "[::]:80", "127.0.0.1:80", nil, `listen "127.0.0.1:80": overlaps virtual_server "a" (listen "[::]:80")`},
		{"[::] beside 0.0.0.0: one socket", "[::]:80", "0.0.0.0:80", nil, `is also the address of virtual_server "a" (listen "[::]:80"): both bind [::]:80`},
		{"empty host beside [::]", ":80", "[::]:80", nil, `both bind [::]:80`},
		{"a wildcard beside a name", ":80", "proxy.example:80", nil, `listen "proxy.example:80": overlaps`},
		{"reuse_port on one side only", "0.0.0.0:80", "127.0.0.1:80", []string{"a"}, `overlaps virtual_server "a"`},
		{"reuse_port on both, same address: connections dealt at random", "127.0.0.1:80", "localhost:80", []string{"a", "b"},
			`with reuse_port on both the kernel would deal connections between the two at random`},
		{"reuse_port on both lets a wildcard beside an address", "0.0.0.0:80", "127.0.0.1:80", []string{"a", "b"}, ""},
		{"two loopback addresses", "127.0.0.1:80", "127.0.0.2:80", nil, ""},
		{"IPv4 and IPv6 loopback", "127.0.0.1:80", "[::1]:80", nil, ""},
		{"localhost and ::1", "localhost:80", "[::1]:80", nil, ""},
		{"other ports", "0.0.0.0:80", "127.0.0.1:81", nil, ""},
		{"port 0 never conflicts", "127.0.0.1:0", "127.0.0.1:0", nil, ""},
		{"port 0 beside a wildcard port 0", "0.0.0.0:0", "127.0.0.1:0", nil, ""},
		{"different names are not resolved", "a.example:80", "b.example:80", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(twoListeners(tc.a, tc.b, tc.reuse...)))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v\nwant one containing %q", err, tc.want)
			case tc.want != "" && strings.Count(err.Error(), "\n") > 0:
				t.Fatalf("want one problem, got %v", err)
			}
		})
	}
}
