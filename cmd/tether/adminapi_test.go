package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// The real binary serves the admin API of its config: /healthz, the pools,
// and a drain that takes the member out of rotation.
func TestBinaryServesTheAdminAPI(t *testing.T) {
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer member.Close()
	memberAddr := strings.TrimPrefix(member.URL, "http://")
	listen, adminAddr := socktest.FreeAddr(t), socktest.FreeAddr(t)
	cfg := fmt.Sprintf(`
[admin]
listen = %q
[pool.p]
members = [{ address = %q }]
[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = "p"
[global]
shutdown_timeout = "2s"
`, adminAddr, memberAddr, listen)
	proc := startBinary(t, writeConfig(t, cfg))
	stderr := proc.stderr

	api := "http://" + adminAddr
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(api + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin API was never ready: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, err := hc.Get(api + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := hc.Get("http://" + listen + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET through tether before the drain: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	req, _ := http.NewRequest("POST", api+"/api/v1/pools/p/members/"+memberAddr+"/drain", nil)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST drain without X-Tether: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	req.Header.Set("X-Tether", "1")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST drain: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	resp, err := hc.Get(api + "/api/v1/pools")
	if err != nil {
		t.Fatal(err)
	}
	var pools struct {
		Pools []struct {
			Name    string
			Members []struct{ Address, State, Admin, Health string }
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&pools)
	resp.Body.Close()
	if err != nil || len(pools.Pools) != 1 || len(pools.Pools[0].Members) != 1 {
		t.Fatalf("/api/v1/pools: %v %+v", err, pools)
	}
	if m := pools.Pools[0].Members[0]; m.Address != memberAddr || m.State != "draining" || m.Admin != "draining" || m.Health != "up" {
		t.Errorf("the drained member: %+v", m)
	}
	// /metrics speaks Prometheus text and says the member is draining.
	mresp, err := hc.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	want := `tether_member_state{member="` + memberAddr + `",pool="p",state="draining"} 1`
	if err != nil || mresp.StatusCode != 200 || !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics: %d %v; want a line %q", mresp.StatusCode, err, want)
	}
	// Its only member draining, the pool has none for a new request.
	if resp, err := hc.Get("http://" + listen + "/"); err != nil || resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET through tether after the drain: %v %v, want 503 or 502", resp, err)
	} else {
		resp.Body.Close()
	}
}

// A non-loopback admin listen without token_file: check fails naming the key.
func TestCheckRefusesAPublicAdminWithoutToken(t *testing.T) {
	code, _, errOut := runCLI("check", "-c", writeConfig(t, "[admin]\nlisten = \"0.0.0.0:9901\"\n"+goodConfig))
	if code == exitOK || !strings.Contains(errOut, "admin: listen") || !strings.Contains(errOut, "token_file") {
		t.Errorf("check: exit %d, stderr %q", code, errOut)
	}
}
