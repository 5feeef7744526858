package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// problemLines returns the lines of Parse's error for text (none: accepted).
func problemLines(t *testing.T, text string) []string {
	t.Helper()
	_, err := Parse([]byte(text))
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse returned %T, want *config.Error: %v", err, err)
	}
	return strings.Split(err.Error(), "\n")
}

// Each problem names the line of its key, or of its table when the key is
// not written: unknown keys and invalid values, in every kind of table and
// however the TOML is written (inline tables, arrays of tables, dotted and
// quoted keys, multi-line strings and arrays before the key).
func TestProblemsNameTheirLine(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []string // whole lines of the error
	}{
		{"unknown key in a profile", "[tcp_profile.lan]\nkeepalve = true\n" + base,
			[]string{`line 2: unknown key "tcp_profile.lan.keepalve" (did you mean "keepalive"?)`}},
		{"unknown key in each of two virtual servers", base + "bogus = 1\n[[virtual_server]]\nname = \"vs2\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\nbogus = 2\n",
			[]string{`line 8: unknown key "virtual_server.bogus"`, `line 13: unknown key "virtual_server.bogus"`}},
		{"unknown key in an inline member", "[pool.q]\nmembers = [\n  { address = \"127.0.0.1:1\" },\n  { adress = \"127.0.0.1:2\" },\n]\n" + base,
			[]string{`line 4: unknown key "pool.q.members.adress" (did you mean "address"?)`, `line 4: pool "q": member 2: address: is required`}},
		{"unknown table", "[virtual_servers]\nx = 1\n" + base,
			[]string{`line 1: unknown key "virtual_servers" (did you mean "virtual_server"?)`, `line 2: unknown key "virtual_servers.x"`}},
		{"profile value", "[tcp_profile.lan]\n# a comment with [brackets] and = signs\nkeepalive_probes = 0\n" + base,
			[]string{`line 3: tcp_profile "lan": keepalive_probes: must be between 1 and 127`}},
		{"lines survive multi-line strings and arrays", "[pool.q]\nmembers = [\n  { address = \"127.0.0.1:1\" }, # one\n  { address = \"127.0.0.1:2\", weight = 0 },\n]\nmax_idle = 0\nmin_idle = 1\n" +
			"[pool.q.health]\ntype = \"http\"\nhost = \"\"\"\nexample.com\"\"\"\npath = '''/ok'''\nexpect_status = \"2xx\"\n" + base,
			[]string{`line 4: pool "q": member 2: weight: must be >= 1`, `line 7: pool "q": min_idle: must be between 0 and max_idle (0)`,
				`line 13: pool "q": health: expect_status "2xx": want a status or a range like "200-399" (100-599)`}},
		{"members as an array of tables", "[[pool.q.members]]\naddress = \"127.0.0.1:1\"\n[[pool.q.members]]\naddress = \"127.0.0.1:1\"\nstate = \"gone\"\n" + base,
			[]string{`line 4: pool "q": member 2: address "127.0.0.1:1": is also member 1`, `line 5: pool "q": member 2: state: "gone" is not one of enabled | disabled`}},
		{"quoted pool name, dotted health key", "[pool.\"my pool\"]\nmembers = [{ address = \"127.0.0.1:1\" }]\nhealth.type = \"ping\"\n" + base,
			[]string{`line 3: pool "my pool": health: type: "ping" is not one of tcp | http | none`}},
		{"health table", strings.Replace(base, "[[virtual_server]]", "[pool.p.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n[[virtual_server]]", 1),
			[]string{`line 6: pool "p": health: timeout: must be <= interval (1s)`}},
		{"a required key left out names its table", base + "[[virtual_server]]\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n",
			[]string{`line 8: virtual_server 2: name: is required`}},
		{"second virtual server of one name", base + "[[virtual_server]]\nname = \"vs\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\nmode = \"udp\"\n",
			[]string{`line 9: virtual_server "vs": name: is used by another virtual_server`, `line 12: virtual_server "vs": mode: "udp" is not a mode (want "tcp" or "http")`}},
		{"overlapping listen names its line", base + "[[virtual_server]]\nname = \"vs2\"\n\nlisten = \"localhost:7379\"\npool = \"p\"\n",
			[]string{`line 11: virtual_server "vs2": listen "localhost:7379": is also the address of virtual_server "vs" (listen "127.0.0.1:7379"): both bind 127.0.0.1:7379, so the second fails with "address already in use"`}},
		{"http table", base + "mode = \"http\"\n[virtual_server.http]\n\nkeepalive_timeout = \"0s\"\n",
			[]string{`line 11: virtual_server "vs": http: keepalive_timeout: must be > 0`}},
		{"tls certificate in an inline array", base + "[virtual_server.tls]\ncertificates = [\n  { key = \"k.pem\" },\n]\n",
			[]string{`line 10: virtual_server "vs": tls: certificate 1: cert: is required`}},
		{"acme", base + "[virtual_server.tls.acme]\ndomains = [\"example.com\"]\nhttp_port = 0\n",
			[]string{`line 10: virtual_server "vs": tls: acme: http_port: must be between 1 and 65535`}},
		{"log", "[log]\nlevel = \"loud\"\n" + base, []string{`line 2: log: level: "loud" is not one of debug | info | warn | error`}},
		{"redefined root profile", "\n[tcp_profile.tcp]\nnodelay = false\n" + base,
			[]string{`line 2: tcp_profile "tcp": the built-in root profile cannot be redefined; define another profile with parent = "tcp"`}},
		{"undefined pool", strings.Replace(base, `pool = "p"`, `pool = "nope"`, 1), []string{`line 7: virtual_server "vs": pool "nope": is not defined (no [pool.nope])`}},
		{"syntax error: line and column", "[log]\nlevel = = 1\n" + base, []string{`line 2, column 9: log.level: expected value but found '=' instead`}},
		{"bad duration", "[tcp_profile.lan]\nidle_timeout = \"5 minutes\"\n" + base,
			[]string{`line 2, column 17: tcp_profile.lan.idle_timeout: invalid duration "5 minutes" (use a string like "300s" or "1.5s")`}},
		{"wrong type", "[tcp_profile.lan]\n\nkeepalive_probes = \"9\"\n" + base,
			[]string{`line 3: tcp_profile.lan.keepalive_probes: incompatible types: TOML value has type string; destination has type integer`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problemLines(t, tc.toml)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("no line %q in\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
		})
	}
}

// One unknown key no longer hides the rest: unknown keys and invalid values
// come together, in line order.
func TestUnknownKeysAndInvalidValuesComeTogether(t *testing.T) {
	got := problemLines(t, `[tcp_profile.lan]
keepalive_probes = 0
close = "x"
[pool.p]
max_idel = 3
members = [{ address = "127.0.0.1:6379" }]
[[virtual_server]]
name = "vs"
listen = "0.0.0.0:7379"
pool = "p"
client_profile = "lan"
[[virtual_server]]
name = "vs2"
listn = "127.0.0.1:7379"
listen = "127.0.0.1:7379"
pool = "p"
`)
	want := []string{
		`line 2: tcp_profile "lan": keepalive_probes: must be between 1 and 127`,
		`line 3: tcp_profile "lan": close: "x" is not one of graceful | reset | drain-reset`,
		`line 5: unknown key "pool.p.max_idel" (did you mean "max_idle"?)`,
		`line 14: unknown key "virtual_server.listn" (did you mean "listen"?)`,
		`line 15: virtual_server "vs2": listen "127.0.0.1:7379": overlaps virtual_server "vs" (listen "0.0.0.0:7379"): a wildcard takes port 7379 on every address (Go binds it as [::]:7379, IPv4 and IPv6), so the second fails with "address already in use"; set reuse_port = true in both client profiles to let each connection go to the more specific listener`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// LoadFile names the file on every line, as compilers do (file:line: msg).
func TestLoadFileNamesFileAndLineOnEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tether.toml")
	if err := os.WriteFile(path, []byte("[log]\nlevel = \"loud\"\nformat = \"xml\"\nbogus = 1\n"+base), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	var e *Error
	if !errors.As(err, &e) || e.File != path || len(e.Problems) != 3 {
		t.Fatalf("want an *Error naming %s with 3 problems, got %#v", path, err)
	}
	want := path + ":2: log: level: \"loud\" is not one of debug | info | warn | error\n" +
		path + ":3: log: format: \"xml\" is not one of json | console\n" +
		path + ":4: unknown key \"log.bogus\""
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
}
