package admin

import (
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// dialRaw opens a conn to the tcp virtual server "raw" (an echo member)
// and echoes msg through it, so the relay and its member conn are up.
func dialRaw(t *testing.T, e *env, msg string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.ListenAddr("raw").String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo through raw: %q %v", got, err)
	}
	return c
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// The endpoint's shape is a contract (a CLI and a dashboard read it):
// every key, for a tcp virtual server whose conns all have a member conn,
// and an http one whose idle keepalive client has none (null).
func TestConnectionsEndpointShape(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "", "shared", a.Addr())
	var clients []net.Conn
	for range 3 {
		clients = append(clients, dialRaw(t, e, "hello"))
	}

	// The clients have their echo; the ACKs of it may reach tether a
	// moment later.
	var body map[string]any
	socktest.WaitFor(t, 5*time.Second, "every conn's echo acknowledged both sides", func() bool {
		body = nil
		if code := e.call(t, "GET", "/api/v1/connections?virtual_server=raw", &body); code != 200 {
			t.Fatalf("GET connections of raw: %d %v", code, body)
		}
		conns, _ := body["connections"].([]any)
		for _, x := range conns {
			for _, side := range []string{"client", "server"} {
				if s, ok := x.(map[string]any)[side].(map[string]any); !ok || s["bytes_out"].(float64) < 5 {
					return false
				}
			}
		}
		return len(conns) == 3
	})
	if got, want := keys(body), []string{"connections", "count", "truncated", "virtual_server"}; !slices.Equal(got, want) {
		t.Errorf("top-level keys %v, want %v", got, want)
	}
	conns, _ := body["connections"].([]any)
	if body["virtual_server"] != "raw" || body["count"] != float64(3) || body["truncated"] != false || len(conns) != 3 {
		t.Fatalf("body: %v", body)
	}
	sockKeys := []string{"bytes_in", "bytes_out", "cwnd", "local", "remote", "retransmits", "rtt_seconds", "state", "unacked"}
	for i, x := range conns {
		c := x.(map[string]any)
		if got, want := keys(c), []string{"age_seconds", "client", "id", "server"}; !slices.Equal(got, want) {
			t.Errorf("connection keys %v, want %v", got, want)
		}
		client, server := c["client"].(map[string]any), c["server"].(map[string]any)
		for side, s := range map[string]map[string]any{"client": client, "server": server} {
			if !slices.Equal(keys(s), sockKeys) {
				t.Errorf("%s keys %v, want %v", side, keys(s), sockKeys)
			}
			if s["state"] != "ESTABLISHED" || s["rtt_seconds"].(float64) <= 0 || s["bytes_in"].(float64) < 5 || s["bytes_out"].(float64) < 5 || s["cwnd"].(float64) <= 0 {
				t.Errorf("connection %d %s side: %v", i, side, s)
			}
		}
		// Oldest first: the order the clients connected.
		if client["local"] != e.srv.ListenAddr("raw").String() || client["remote"] != clients[i].LocalAddr().String() {
			t.Errorf("connection %d: client side %v <- %v, want %s <- %s", i, client["local"], client["remote"], e.srv.ListenAddr("raw"), clients[i].LocalAddr())
		}
		if server["remote"] == "" || server["local"] == "" {
			t.Errorf("connection %d: server side %v", i, server)
		}
	}

	// http: an idle keepalive client under shared reuse holds no member conn.
	// The client has its response a moment before tether gives the member
	// conn back: wait for that.
	cl := dialWeb(t, e)
	cl.get(t)
	var c map[string]any
	socktest.WaitFor(t, 5*time.Second, "the idle client's member conn to go back to the pool", func() bool {
		var web map[string]any
		if code := e.call(t, "GET", "/api/v1/connections?virtual_server=web", &web); code != 200 {
			t.Fatalf("GET connections of web: %d %v", code, web)
		}
		wc, _ := web["connections"].([]any)
		if web["count"] != float64(1) || len(wc) != 1 {
			t.Fatalf("web: %v", web)
		}
		c = wc[0].(map[string]any)
		return c["server"] == nil
	})
	if _, ok := c["server"]; !ok {
		t.Errorf("idle shared-reuse client: no server key, want null")
	}
	if c["client"].(map[string]any)["remote"] != cl.c.LocalAddr().String() {
		t.Errorf("web client side: %v", c["client"])
	}
}

func TestConnectionsLimitTruncates(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "", "shared", a.Addr())
	for range 3 {
		dialRaw(t, e, "x")
	}
	var all, two connsBody
	if code := e.call(t, "GET", "/api/v1/connections?virtual_server=raw", &all); code != 200 || all.Count != 3 || all.Truncated || len(all.Connections) != 3 {
		t.Fatalf("no limit: %d %+v", code, all)
	}
	if code := e.call(t, "GET", "/api/v1/connections?virtual_server=raw&limit=2", &two); code != 200 || two.Count != 3 || !two.Truncated || len(two.Connections) != 2 {
		t.Fatalf("limit=2: %d %+v, want count 3, truncated, 2 listed", code, two)
	}
	for i := range two.Connections {
		if two.Connections[i].ID != all.Connections[i].ID {
			t.Errorf("limit=2 lists %d at %d, want the oldest ones (%d)", two.Connections[i].ID, i, all.Connections[i].ID)
		}
	}
	if code := e.call(t, "GET", "/api/v1/connections?virtual_server=raw&limit=10000", &all); code != 200 || all.Truncated {
		t.Errorf("limit=10000: %d %+v", code, all)
	}
}

func TestConnectionsBadRequests(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "", "shared", a.Addr())
	for _, tc := range []struct {
		query string
		want  int
		err   string // "" = any
	}{
		{"", 400, "missing query parameter virtual_server"},
		{"?virtual_server=", 400, "missing query parameter virtual_server"},
		{"?limit=5", 400, "missing query parameter virtual_server"},
		{"?virtual_server=x", 404, `no virtual server "x"`},
		{"?virtual_server=web&limit=0", 400, ""},
		{"?virtual_server=web&limit=-1", 400, ""},
		{"?virtual_server=web&limit=ten", 400, `bad limit "ten": want a whole number from 1 to 10000`},
		{"?virtual_server=web&limit=10001", 400, ""},
		{"?virtual_server=web&limit=", 400, ""},
		{"?virtual_server=web&limit=1.5", 400, ""},
	} {
		var body apiError
		code := e.call(t, "GET", "/api/v1/connections"+tc.query, &body)
		if code != tc.want || body.Error == "" || body.Problems == nil || (tc.err != "" && body.Error != tc.err) {
			t.Errorf("%q: %d %+v, want %d %q", tc.query, code, body, tc.want, tc.err)
		}
	}
	var body apiError
	if code := e.call(t, "POST", "/api/v1/connections?virtual_server=web", &body); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d %+v, want 405", code, body)
	}
	var ok connsBody
	if code := e.call(t, "GET", "/api/v1/connections?virtual_server=web", &ok); code != 200 || ok.Count != 0 || ok.Connections == nil {
		t.Errorf("no connections: %d %+v, want 200 with an empty list", code, ok)
	}
}

func TestConnectionsNeedTheToken(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "s3cret", "shared", a.Addr())
	dialRaw(t, e, "x")
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer s3cret", 200}} {
		req, _ := http.NewRequest("GET", e.base+"/api/v1/connections?virtual_server=raw", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		var body connsBody
		if code := do(t, req, &body); code != tc.want {
			t.Errorf("with %q: %d, want %d", tc.auth, code, tc.want)
		} else if code == 200 && (body.Count != 1 || len(body.Connections) != 1) {
			t.Errorf("with the token: %+v, want the one conn", body)
		}
	}
}
