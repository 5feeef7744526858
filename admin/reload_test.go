package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func twoMemberTOML(listen string, members ...string) string {
	ms := make([]string, len(members))
	for i, m := range members {
		ms[i] = fmt.Sprintf("{ address = %q }", m)
	}
	return fmt.Sprintf(`
[pool.p]
members = [%s]
[pool.p.health]
type = "none"
[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = "p"
`, strings.Join(ms, ", "), listen)
}

// POST /api/v1/reload: a good file is put in force (200, the changes); a bad
// one is refused with every problem, naming the key and line (400), the old
// config keeps serving, /api/v1/status and the metrics say the last reload
// failed; a state set at run time survives a reload that keeps the member.
func TestReloadEndpoint(t *testing.T) {
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	listen := socktest.FreeAddr(t)
	e := startTOML(t, "", twoMemberTOML(listen, a.Addr()))

	// Drain a at run time; the reload adds b and keeps a, still draining.
	if code := e.call(t, "POST", "/api/v1/pools/p/members/"+a.Addr()+"/drain", nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	e.write(t, twoMemberTOML(listen, a.Addr(), b.Addr()))
	var res Result
	if code := e.call(t, "POST", "/api/v1/reload", &res); code != 200 || !res.OK {
		t.Fatalf("reload: %d %+v", code, res)
	}
	if !slicesContain(res.Changes, "member "+b.Addr()+" added") {
		t.Errorf("changes %q do not name the added member", res.Changes)
	}
	pools := getPools(t, e)
	states := map[string]string{}
	for _, m := range pools[0].Members {
		states[m.Address] = m.State
	}
	if states[a.Addr()] != "draining" || states[b.Addr()] != "up" {
		t.Fatalf("member states after the reload: %v, want a draining (set at run time), b up", states)
	}
	c := dialWeb(t, e)
	if got := c.get(t); got != "b" {
		t.Fatalf("request went to %q, want b (a drains)", got)
	}

	// A bad file: two problems, both reported; nothing changes.
	e.write(t, strings.Replace(twoMemberTOML(listen, a.Addr()), `mode = "http"`, "mode = \"gopher\"\nnonsense = 1", 1))
	var apiErr apiError
	if code := e.call(t, "POST", "/api/v1/reload", &apiErr); code != 400 {
		t.Fatalf("bad reload: %d, want 400", code)
	}
	if len(apiErr.Problems) != 2 || !strings.Contains(strings.Join(apiErr.Problems, "\n"), "mode") ||
		!strings.Contains(strings.Join(apiErr.Problems, "\n"), "nonsense") || !strings.Contains(apiErr.Problems[0], "tether.toml:") {
		t.Errorf("problems %q, want both (mode, nonsense) with file and line", apiErr.Problems)
	}
	if got := c.get(t); got != "b" {
		t.Errorf("after the bad reload the old config answered %q", got)
	}
	var st statusBody
	e.call(t, "GET", "/api/v1/status", &st)
	if st.LastReload.OK || len(st.LastReload.Problems) != 2 {
		t.Errorf("status last_reload %+v, want failed with 2 problems", st.LastReload)
	}
	fams := scrape(t, MetricsHandler(e.srv, e.rl.Status))
	mustValue(t, fams, 0, "tether_config_last_reload_successful")

	// Fixed: in force again, and the metric says so.
	e.write(t, twoMemberTOML(listen, a.Addr(), b.Addr()))
	if code := e.call(t, "POST", "/api/v1/reload", &res); code != 200 {
		t.Fatalf("reload: %d", code)
	}
	mustValue(t, scrape(t, MetricsHandler(e.srv, e.rl.Status)), 1, "tether_config_last_reload_successful")
	e.call(t, "GET", "/api/v1/status", &st)
	if !st.LastReload.OK || st.ConfigSHA256 == "" {
		t.Errorf("status after a good reload: %+v", st)
	}
	if a.Addr() == "" || e.srv.Pool("p").Members()[0].AdminState() != pool.AdminDraining {
		t.Error("a's run-time state did not survive the second reload")
	}
}

// The reload endpoint is a change: POST only, with X-Tether.
func TestReloadNeedsPostWithXTether(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startTOML(t, "", twoMemberTOML(socktest.FreeAddr(t), a.Addr()))
	if code := e.call(t, "GET", "/api/v1/reload", nil); code != 405 {
		t.Errorf("GET /api/v1/reload: %d, want 405", code)
	}
	req, err := http.NewRequest("POST", e.base+"/api/v1/reload", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := do(t, req, nil); code != 403 {
		t.Errorf("POST without X-Tether: %d, want 403", code)
	}
}

func slicesContain(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
