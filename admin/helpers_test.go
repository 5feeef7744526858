package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// httpBackend answers every request with its name in X-Member, keeps the
// conn alive unless the request says Connection: close, and records the
// requests that did (the member then closes first).
type httpBackend struct {
	*socktest.Backend
	name string

	mu       sync.Mutex
	requests int
	closes   int // requests that carried Connection: close
}

func newHTTPBackend(t *testing.T, name string) *httpBackend {
	b := &httpBackend{name: name}
	b.Backend = socktest.Start(t, b.serve)
	return b
}

func (b *httpBackend) serve(c *net.TCPConn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		b.mu.Lock()
		b.requests++
		if req.Close {
			b.closes++
		}
		b.mu.Unlock()
		hdr := "Connection: keep-alive\r\n"
		if req.Close {
			hdr = "Connection: close\r\n"
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Member: %s\r\nContent-Length: 2\r\n%s\r\nok", b.name, hdr)
		if req.Close {
			return
		}
	}
}

func (b *httpBackend) counts() (requests, closes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests, b.closes
}

// env is a running proxy (an http virtual server "web" on pool "p" with
// the given members, a tcp one "raw" on pool "q") and its admin API.
type env struct {
	srv   *proxy.Server
	admin *Admin
	base  string // http://addr
	token string
	path  string    // the config file the proxy runs
	rl    *Reloader // POST /api/v1/reload re-reads path
}

const proxyTOML = `
[pool.p]
reuse = "%s"
members = [%s]
[pool.q]
members = [{ address = "%s" }]
[[virtual_server]]
name = "web"
listen = "127.0.0.1:0"
mode = "http"
pool = "p"
[[virtual_server]]
name = "raw"
listen = "127.0.0.1:0"
pool = "q"
`

// startEnv runs the proxy with pool "p" in the given reuse mode ("shared",
// "per-client") and its admin API with token ("" = none).
func startEnv(t *testing.T, token, reuse string, members ...string) *env {
	t.Helper()
	ms := make([]string, len(members))
	for i, m := range members {
		ms[i] = fmt.Sprintf("{ address = %q }", m)
	}
	echo := socktest.Start(t, socktest.Echo)
	return startTOML(t, token, fmt.Sprintf(proxyTOML, reuse, strings.Join(ms, ", "), echo.Addr()))
}

// startTOML runs the proxy of toml, written to a config file, with its
// admin API (token "" = none) and a Reloader of that file.
func startTOML(t *testing.T, token, toml string) *env {
	t.Helper()
	e := &env{token: token, path: filepath.Join(t.TempDir(), "tether.toml")}
	e.write(t, toml)
	cfg, err := config.LoadFile(e.path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	if e.srv, err = proxy.New(cfg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(e.srv.Shutdown) })
	e.rl = NewReloader(e.path, cfg, e.srv, nil)
	e.admin, err = New(Options{Listen: "127.0.0.1:0", Token: token, Server: e.srv, Version: "test", ConfigPath: e.path, Reloader: e.rl})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.admin.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(e.admin.Shutdown) }) // runs before the proxy's
	if err := e.srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + e.admin.Addr().String()
	return e
}

// write replaces the config file's content (for a reload).
func (e *env) write(t *testing.T, toml string) {
	t.Helper()
	if err := os.WriteFile(e.path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newProxy builds (not starts) a proxy.Server from a TOML config and shuts
// it down at the test's end.
func newProxy(t *testing.T, toml string) *proxy.Server {
	t.Helper()
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(srv.Shutdown) })
	return srv
}

// shutdown runs a Shutdown with a 5 s bound.
func shutdown(f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f(ctx)
}

// call makes a request to the admin API (with the env's token, and X-Tether
// on POST) and decodes the JSON body into out (nil: ignore it).
func (e *env) call(t *testing.T, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	if method == http.MethodPost {
		req.Header.Set("X-Tether", "1")
	}
	return do(t, req, out)
}

func do(t *testing.T, req *http.Request, out any) int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || out != nil {
		if !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: %d with Content-Type %q, want JSON", req.Method, req.URL.Path, resp.StatusCode, ct)
		}
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", req.Method, req.URL.Path, err)
		}
	}
	return resp.StatusCode
}

// client is a keepalive HTTP client of the "web" virtual server.
type client struct {
	c  net.Conn
	br *bufio.Reader
}

func dialWeb(t *testing.T, e *env) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.ListenAddr("web").String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{c: c, br: bufio.NewReader(c)}
}

// get sends one GET and returns the member that answered.
func (c *client) get(t *testing.T) string {
	t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET through the proxy: %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Member")
}
