package admin

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
)

// POST /api/v1/upgrade answers with the UpgradeFunc's outcome: 200 with
// the new PID, 500 with why and the new process's problems, 409 for an
// upgrade not tried, 404 without one; under the token and X-Tether rules
// of every change; and Options.Listener gives the admin its listener.
func TestUpgradeEndpoint(t *testing.T) {
	srv := newProxy(t, twoMemberTOML("127.0.0.1:0", "127.0.0.1:1"))
	var outcome struct {
		pid      int
		problems []string
		err      error
	}
	upgrade := func(context.Context) (int, []string, error) { return outcome.pid, outcome.problems, outcome.err }
	var given net.Listener
	listener := func(_ context.Context, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		given = ln
		return ln, err
	}
	start := func(o Options) *env {
		t.Helper()
		o.Listen, o.Server = "127.0.0.1:0", srv
		a, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shutdown(a.Shutdown) })
		return &env{admin: a, token: o.Token, base: "http://" + a.Addr().String()}
	}
	e := start(Options{Token: "sesame", Upgrade: upgrade, Listener: listener})
	if given == nil || given.Addr().String() != e.admin.Addr().String() {
		t.Fatalf("the admin listens on %v, not on the listener Options.Listener gave (%v)", e.admin.Addr(), given)
	}

	outcome.pid = 4242
	var ok upgradeAnswer
	if code := e.call(t, "POST", "/api/v1/upgrade", &ok); code != 200 || !ok.OK || ok.NewPID != 4242 || ok.OldPID == 0 {
		t.Errorf("upgrade: %d %+v", code, ok)
	}
	outcome.err = fmt.Errorf("upgrade failed (child pid=1 exited: exit status 1): this process keeps serving")
	outcome.problems = []string{"invalid configuration:", `t.toml:3: unknown key "x"`}
	var failed apiError
	if code := e.call(t, "POST", "/api/v1/upgrade", &failed); code != 500 || failed.Error != outcome.err.Error() || len(failed.Problems) != 2 {
		t.Errorf("failed upgrade: %d %+v", code, failed)
	}
	outcome.err = fmt.Errorf("%w: an upgrade is under way", ErrUpgradeRefused)
	if code := e.call(t, "POST", "/api/v1/upgrade", nil); code != 409 {
		t.Errorf("refused upgrade: %d, want 409", code)
	}
	if code := e.call(t, "GET", "/api/v1/upgrade", nil); code != 405 {
		t.Errorf("GET: %d, want 405", code)
	}
	e.token = "wrong"
	if code := e.call(t, "POST", "/api/v1/upgrade", nil); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	req, _ := http.NewRequest("POST", e.base+"/api/v1/upgrade", nil)
	req.Header.Set("Authorization", "Bearer sesame")
	if code := do(t, req, nil); code != 403 {
		t.Errorf("no X-Tether: %d, want 403", code)
	}
	if code := start(Options{}).call(t, "POST", "/api/v1/upgrade", nil); code != 404 {
		t.Errorf("without an UpgradeFunc: %d, want 404", code)
	}
}
