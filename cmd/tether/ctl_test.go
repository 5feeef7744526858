package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/admin"
	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// ctlEnv is a running proxy (tcp virtual server "vs" on pool "p" with two
// echo members, "raw" on pool "q" with one) and its admin API.
type ctlEnv struct {
	srv        *proxy.Server
	adminAddr  string
	members    []string // pool p's
	listen     string   // vs's bound address
	configPath string
}

const ctlTOML = `
[pool.p]
members = [{ address = %q }, { address = %q }]
[pool.q]
members = [{ address = %q }]
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:0"
pool = "p"
[[virtual_server]]
name = "raw"
listen = "127.0.0.1:0"
pool = "q"
`

// startCtlEnv runs the proxy and an admin API with token ("" = none).
func startCtlEnv(t *testing.T, token string) *ctlEnv {
	t.Helper()
	a, b, c := socktest.Start(t, socktest.Echo), socktest.Start(t, socktest.Echo), socktest.Start(t, socktest.Echo)
	text := fmt.Sprintf(ctlTOML, a.Addr(), b.Addr(), c.Addr())
	path := writeConfig(t, text)
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctlShutdown(srv.Shutdown) })
	adm, err := admin.New(admin.Options{Listen: "127.0.0.1:0", Token: token, ConfigPath: path, Version: "tether test", Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctlShutdown(adm.Shutdown) }) // before the proxy's
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &ctlEnv{srv: srv, adminAddr: adm.Addr().String(), members: []string{a.Addr(), b.Addr()},
		listen: srv.ListenAddr("vs").String(), configPath: path}
}

func ctlShutdown(f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f(ctx)
}

// ctl runs `tether ctl --admin ENV ARGS...`.
func (e *ctlEnv) ctl(args ...string) (code int, stdout, stderr string) {
	return runCLI(append([]string{"ctl", "--admin", "http://" + e.adminAddr}, args...)...)
}

// rows returns the table's lines split into fields, without the header.
func rows(out string) [][]string {
	var rs [][]string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[1:] {
		rs = append(rs, strings.Fields(l))
	}
	return rs
}

// echoThrough makes one round trip through the virtual server.
func echoThrough(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestCtlStatusPoolsAndMembersShowTheRunningProxy(t *testing.T) {
	e := startCtlEnv(t, "")
	echoThrough(t, e.listen)

	code, out, errOut := e.ctl("status")
	if code != exitOK {
		t.Fatalf("status: exit %d %s", code, errOut)
	}
	for _, want := range []string{"version        tether test", "config         " + e.configPath, "config sha256  ", "last reload    ", " ok\n", "uptime"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = e.ctl("pools")
	if code != exitOK {
		t.Fatalf("pools: exit %d %s", code, errOut)
	}
	if !strings.HasPrefix(out, "POOL  ") || !strings.Contains(out, "CONNECTS") {
		t.Errorf("pools: no header:\n%s", out)
	}
	rs := rows(out)
	if len(rs) != 3 {
		t.Fatalf("pools: %d rows, want one per member (3):\n%s", len(rs), out)
	}
	connects := 0
	for i, r := range rs[:2] {
		if r[0] != "p" || r[1] != e.members[i] || r[2] != "up" || r[3] != "enabled" || r[4] != "up" {
			t.Errorf("pools row %d: %q", i, r)
		}
		if r[7] == "1" {
			connects++
		}
	}
	if connects != 1 {
		t.Errorf("pools: want one member of p with 1 connect after one connection:\n%s", out)
	}
	if rs[2][0] != "q" {
		t.Errorf("pools: last row %q, want pool q", rs[2])
	}

	code, out, errOut = e.ctl("members", "q")
	if rs := rows(out); code != exitOK || len(rs) != 1 || rs[0][0] != "q" {
		t.Errorf("members q: exit %d %q\n%s", code, errOut, out)
	}
	code, _, errOut = e.ctl("members", "nope")
	if code != exitError || !strings.Contains(errOut, `no pool "nope" (pools: p, q)`) {
		t.Errorf("members nope: exit %d, stderr %q", code, errOut)
	}
}

func TestCtlDisableDrainEnableChangeTheMemberState(t *testing.T) {
	e := startCtlEnv(t, "")
	m := e.members[1]
	for _, tc := range []struct{ action, admin, state string }{
		{"disable", "disabled", "disabled"},
		{"drain", "draining", "draining"},
		{"enable", "enabled", "up"},
	} {
		code, out, errOut := e.ctl(tc.action, "p", m)
		if code != exitOK || !strings.Contains(out, "-> "+tc.admin) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.action, code, out, errOut)
		}
		// As the API sees it afterwards.
		_, out, _ = e.ctl("members", "p")
		rs := rows(out)
		if len(rs) != 2 || rs[1][1] != m || rs[1][2] != tc.state || rs[1][3] != tc.admin || rs[0][3] != "enabled" {
			t.Errorf("after %s: members p\n%s", tc.action, out)
		}
		if got := e.srv.Pool("p").Members()[1].AdminState().String(); got != tc.admin {
			t.Errorf("after %s: the pool says %s", tc.action, got)
		}
	}
	code, _, errOut := e.ctl("drain", "p", "127.0.0.1:1")
	if code != exitError || !strings.Contains(errOut, "404") || !strings.Contains(errOut, `pool "p" has no member "127.0.0.1:1"`) {
		t.Errorf("drain of an unknown member: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = e.ctl("drain", "nope", m)
	if code != exitError || !strings.Contains(errOut, `no pool "nope"`) {
		t.Errorf("drain in an unknown pool: exit %d, stderr %q", code, errOut)
	}
}

func TestCtlJSONPrintsTheAPIsAnswer(t *testing.T) {
	e := startCtlEnv(t, "")
	code, out, errOut := e.ctl("--json", "pools")
	if code != exitOK {
		t.Fatalf("exit %d %s", code, errOut)
	}
	var ps struct {
		Pools []struct {
			Name    string
			Members []struct{ Address, Admin string }
		}
	}
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps.Pools) != 2 || ps.Pools[0].Members[0].Address != e.members[0] {
		t.Fatalf("--json pools: %v %+v\n%s", err, ps, out)
	}
	// The flag may come after the command too; a change answers JSON.
	code, out, errOut = e.ctl("drain", "p", e.members[0], "--json")
	var r map[string]string
	if err := json.Unmarshal([]byte(out), &r); code != exitOK || err != nil || r["admin"] != "draining" || r["previous"] != "enabled" {
		t.Errorf("drain --json: exit %d %v %q %s", code, err, out, errOut)
	}
	var st map[string]any
	if code, out, _ = e.ctl("status", "--json"); json.Unmarshal([]byte(out), &st) != nil || st["version"] != "tether test" {
		t.Errorf("status --json: exit %d %s", code, out)
	}
}

func TestCtlTokenFromFlagOrConfigAndAWrongOneFails(t *testing.T) {
	e := startCtlEnv(t, "s3cret")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	_ = os.WriteFile(good, []byte("s3cret\n"), 0o600)
	_ = os.WriteFile(bad, []byte("wrong\n"), 0o600)

	if code, _, errOut := e.ctl("--token-file", good, "drain", "p", e.members[0]); code != exitOK {
		t.Errorf("right token: exit %d %s", code, errOut)
	}
	for _, args := range [][]string{{"--token-file", bad, "pools"}, {"pools"}, {"--token-file", bad, "enable", "p", e.members[0]}} {
		code, out, errOut := e.ctl(args...)
		if code != exitError || out != "" || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "missing or wrong bearer token") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if got := e.srv.Pool("p").Members()[0].AdminState().String(); got != "draining" {
		t.Errorf("member %s after a refused enable", got)
	}

	// -c: the API's address and token_file from the config.
	cfg := fmt.Sprintf("[admin]\nlisten = %q\ntoken_file = \"good\"\n[pool.p]\nmembers = [{ address = \"127.0.0.1:1\" }]\n"+
		"[[virtual_server]]\nname = \"x\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n", e.adminAddr)
	cfgPath := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("ctl", "-c", cfgPath, "members", "p")
	if rs := rows(out); code != exitOK || len(rs) != 2 || rs[0][3] != "draining" {
		t.Errorf("ctl -c: exit %d %s\n%s", code, errOut, out)
	}
	// --token-file wins over the config's.
	if code, _, errOut := runCLI("ctl", "-c", cfgPath, "--token-file", bad, "pools"); code != exitError || !strings.Contains(errOut, "401") {
		t.Errorf("ctl -c --token-file bad: exit %d %s", code, errOut)
	}
}

func TestCtlConfigWithAdminOffOrPortZeroIsAClearError(t *testing.T) {
	const rest = "[pool.p]\nmembers = [{ address = \"127.0.0.1:1\" }]\n[[virtual_server]]\nname = \"x\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n"
	for _, tc := range []struct{ admin, want string }{
		{"[admin]\nlisten = \"off\"\n", `the admin API is off ([admin] listen = "off")`},
		{"[admin]\nlisten = \"127.0.0.1:0\"\n", "port 0 is chosen at start"},
		{"[admin]\nlisten = \"127.0.0.1:9901\"\ntoken_file = \"missing\"\n", "token file: open"},
		{"[admin]\nbogus = 1\n", `unknown key "admin.bogus"`},
	} {
		code, out, errOut := runCLI("ctl", "-c", writeConfig(t, tc.admin+rest), "status")
		if code != exitError || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, want %q", tc.admin, code, out, errOut, tc.want)
		}
	}
}

func TestCtlUnreachableAPIExitsNonZeroSayingSo(t *testing.T) {
	dead := socktest.DeadAddr(t)
	code, out, errOut := runCLI("ctl", "--admin", dead, "status")
	if code != exitError || out != "" || !strings.Contains(errOut, "cannot reach the admin API at http://"+dead) || !strings.Contains(errOut, "connection refused") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestCtlUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"pools", "extra"},
		{"members"},
		{"drain", "p"},
		{"enable", "p", "a", "b"},
		{"conns"},
		{"conns", "vs", "--limit", "-1"},
		{"conns", "vs", "--limit", "x"},
		{"pools", "--limit", "5"},
		{"-c", "x.toml", "--admin", "http://127.0.0.1:1", "status"},
		{"--admin", "ftp://127.0.0.1:1", "status"},
		{"--admin", "http://127.0.0.1:1/api", "status"},
		{"--bogus", "status"},
	} {
		code, out, errOut := runCLI(append([]string{"ctl"}, args...)...)
		if code != exitUsage || out != "" || errOut == "" {
			t.Errorf("ctl %q: exit %d, stdout %q, stderr %q; want exit 2 and a message", args, code, out, errOut)
		}
	}
}

// fakeAPI is an admin API stand-in answering one path with a fixed status
// and body, recording the request. POST /api/v1/reload and GET
// /api/v1/connections are not on this branch yet: these tests hold the
// client to the endpoints' contract, and the real-API tests come with the
// endpoints.
type fakeAPI struct {
	*httptest.Server
	reqs chan *http.Request
}

func startFakeAPI(t *testing.T, method, path string, status int, body string) *fakeAPI {
	t.Helper()
	f := &fakeAPI{reqs: make(chan *http.Request, 16)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.reqs <- r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		if r.Method != method || r.URL.Path != path {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":"no such endpoint: `+r.URL.Path+`","problems":[]}`)
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) lastRequest(t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	default:
		t.Fatal("the fake API saw no request")
		return nil
	}
}

func TestCtlReloadPrintsTheChangesOrEveryProblem(t *testing.T) {
	const ok = `{"ok":true,"at":"2025-01-02T03:04:05Z","changes":["pool \"p\": member 127.0.0.1:2 added","virtual_server \"web\": max_connections 100 -> 200"]}`
	api := startFakeAPI(t, "POST", "/api/v1/reload", 200, ok)
	token := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(token, []byte("tok\n"), 0o600)
	code, out, errOut := runCLI("ctl", "--admin", api.URL, "--token-file", token, "reload")
	want := "reloaded at 2025-01-02T03:04:05Z: 2 changes\n  pool \"p\": member 127.0.0.1:2 added\n  virtual_server \"web\": max_connections 100 -> 200\n"
	if code != exitOK || out != want || errOut != "" {
		t.Errorf("reload: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	r := api.lastRequest(t)
	if r.Header.Get("X-Tether") != "1" || r.Header.Get("Authorization") != "Bearer tok" {
		t.Errorf("reload request headers: %v", r.Header)
	}
	if code, out, _ := runCLI("ctl", "--admin", api.URL, "--json", "reload"); code != exitOK || out != ok {
		t.Errorf("reload --json: exit %d %q, want the body unchanged", code, out)
	}

	none := startFakeAPI(t, "POST", "/api/v1/reload", 200, `{"ok":true,"at":"2025-01-02T03:04:05Z","changes":[]}`)
	if code, out, _ := runCLI("ctl", "--admin", none.URL, "reload"); code != exitOK || !strings.Contains(out, "no changes") {
		t.Errorf("reload without changes: exit %d %q", code, out)
	}

	bad := startFakeAPI(t, "POST", "/api/v1/reload", 400,
		`{"error":"invalid configuration; the running one is unchanged","problems":["line 3: log: level: \"loud\" is not one of debug | info | warn | error","line 9: pool \"q\": is not defined"]}`)
	code, out, errOut = runCLI("ctl", "--admin", bad.URL, "reload")
	for _, w := range []string{"POST /api/v1/reload: 400 Bad Request: invalid configuration; the running one is unchanged\n",
		"\n  line 3: log: level: \"loud\" is not one of debug | info | warn | error\n", "\n  line 9: pool \"q\": is not defined\n"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("reload with problems: stderr lacks %q:\n%s", w, errOut)
		}
	}
	if code != exitError || out != "" {
		t.Errorf("reload with problems: exit %d, stdout %q", code, out)
	}
	// --json does not hide a failure: the error still goes to stderr.
	if code, out, errOut := runCLI("ctl", "--admin", bad.URL, "--json", "reload"); code != exitError || out != "" || !strings.Contains(errOut, "pool \"q\"") {
		t.Errorf("reload --json with problems: exit %d %q %q", code, out, errOut)
	}
}

const connsBody = `{"virtual_server":"web","count":2,"truncated":false,"connections":[
{"id":7,"age_seconds":1.5,
 "client":{"local":"127.0.0.1:8080","remote":"127.0.0.1:51234","state":"ESTABLISHED","rtt_seconds":0.0001,"retransmits":0,"cwnd":10,"unacked":0,"bytes_in":120,"bytes_out":4000},
 "server":{"local":"127.0.0.1:40000","remote":"127.0.0.1:9000","state":"ESTABLISHED","rtt_seconds":0.00025,"retransmits":3,"cwnd":10,"unacked":0,"bytes_in":4000,"bytes_out":120}},
{"id":8,"age_seconds":0.2,
 "client":{"local":"127.0.0.1:8080","remote":"127.0.0.1:51235","state":"CLOSE_WAIT","rtt_seconds":0.002,"retransmits":1,"cwnd":10,"unacked":0,"bytes_in":5,"bytes_out":0},
 "server":null}]}`

func TestCtlConnsPrintsBothSidesOfEachConnection(t *testing.T) {
	api := startFakeAPI(t, "GET", "/api/v1/connections", 200, connsBody)
	code, out, errOut := runCLI("ctl", "--admin", api.URL, "conns", "web", "--limit", "5")
	if code != exitOK {
		t.Fatalf("exit %d %s", code, errOut)
	}
	if q := api.lastRequest(t).URL.Query(); q.Get("virtual_server") != "web" || q.Get("limit") != "5" {
		t.Errorf("query %v, want virtual_server=web&limit=5", q)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || lines[3] != "virtual server web: 2 connections" {
		t.Fatalf("conns output:\n%s", out)
	}
	wantRows := [][]string{
		{"7", "1.5s", "127.0.0.1:51234->127.0.0.1:8080", "ESTABLISHED", "100µs", "0", "120", "4000",
			"127.0.0.1:40000->127.0.0.1:9000", "ESTABLISHED", "250µs", "3", "4000", "120"},
		{"8", "200ms", "127.0.0.1:51235->127.0.0.1:8080", "CLOSE_WAIT", "2ms", "1", "5", "0", "-", "-", "-", "-", "-", "-"},
	}
	for i, want := range wantRows {
		if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("row %d:\n got %q\nwant %q", i, got, want)
		}
	}

	trunc := startFakeAPI(t, "GET", "/api/v1/connections", 200, strings.Replace(connsBody, `"truncated":false`, `"truncated":true`, 1))
	if code, out, _ := runCLI("ctl", "--admin", trunc.URL, "conns", "web"); code != exitOK || !strings.Contains(out, "2 connections shown, truncated") {
		t.Errorf("truncated: exit %d\n%s", code, out)
	}
	if q := trunc.lastRequest(t).URL.Query(); q.Has("limit") {
		t.Errorf("no --limit sent limit=%q; want the API's default", q.Get("limit"))
	}
	if code, out, _ := runCLI("ctl", "--admin", api.URL, "--json", "conns", "web"); code != exitOK || out != connsBody {
		t.Errorf("conns --json: exit %d, want the body unchanged:\n%s", code, out)
	}

	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{404, `{"error":"no virtual server \"nope\"","problems":[]}`, `GET /api/v1/connections: 404 Not Found: no virtual server "nope"`},
		{400, `{"error":"limit: want a positive integer","problems":[]}`, "400 Bad Request: limit: want a positive integer"},
		{502, `<html>bad gateway</html>`, `502 Bad Gateway: not an admin API error: "<html>bad gateway</html>"`},
	} {
		api := startFakeAPI(t, "GET", "/api/v1/connections", tc.status, tc.body)
		code, out, errOut := runCLI("ctl", "--admin", api.URL, "conns", "nope")
		if code != exitError || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%d: exit %d, stdout %q, stderr %q, want %q", tc.status, code, out, errOut, tc.want)
		}
	}
}
