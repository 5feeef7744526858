package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// The real binary reloads its whole config on SIGHUP, on POST
// /api/v1/reload and on `tether ctl reload`, under keepalive and
// short-connection load: a member added by one reload gets requests, a bad
// file is refused with its problems (the process keeps the old config and
// exits 0 at the end), and no request fails.
func TestBinaryReloadsItsConfigUnderLoad(t *testing.T) {
	var hitsA, hitsB atomic.Int64
	member := func(n *atomic.Int64, name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	ma, mb := member(&hitsA, "a"), member(&hitsB, "b")
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	listen, adminAddr := socktest.FreeAddr(t), socktest.FreeAddr(t)
	conf := func(members ...string) string {
		var ms []string
		for _, m := range members {
			ms = append(ms, fmt.Sprintf("{ address = %q }", m))
		}
		return fmt.Sprintf(`
[log]
access = false
[admin]
listen = %q
[pool.p]
members = [%s]
[pool.p.health]
type = "none"
[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = "p"
[global]
shutdown_timeout = "2s"
`, adminAddr, strings.Join(ms, ", "), listen)
	}
	path := writeConfig(t, conf(addr(ma)))
	rewrite := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	proc := startBinary(t, path)
	api := "http://" + adminAddr
	hc := &http.Client{Timeout: 5 * time.Second}
	socktest.WaitFor(t, 10*time.Second, "tether ready", func() bool {
		resp, err := hc.Get(api + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// Load: 3 keepalive and 1 short-connection clients, bounded.
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func(keepalive bool) {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepalive}}
			defer c.CloseIdleConnections()
			for range 50000 {
				select {
				case <-quit:
					return
				default:
				}
				resp, err := c.Get("http://" + listen + "/")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					s := err.Error()
					firstErr.CompareAndSwap(nil, &s)
					continue
				}
				ok.Add(1)
			}
		}(i < 3)
	}
	waitRequests := func(n int64) {
		t.Helper()
		from := ok.Load()
		socktest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d more requests", n), func() bool { return ok.Load() >= from+n })
	}
	post := func() (int, string) {
		req, _ := http.NewRequest("POST", api+"/api/v1/reload", nil)
		req.Header.Set("X-Tether", "1")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	waitRequests(100)
	// 1. SIGHUP adds member b.
	rewrite(conf(addr(ma), addr(mb)))
	proc.signal(syscall.SIGHUP)
	socktest.WaitFor(t, 5*time.Second, "the SIGHUP reload logged", func() bool { return strings.Contains(proc.stderr.String(), `"config reloaded"`) })
	socktest.WaitFor(t, 5*time.Second, "requests on the added member", func() bool { return hitsB.Load() > 10 })

	// 2. The API refuses a bad file, naming the key; the old config serves on.
	rewrite(strings.Replace(conf(addr(ma), addr(mb)), `mode = "http"`, `mode = "gopher"`, 1))
	code, body := post()
	if code != 400 || !strings.Contains(body, "mode") || !strings.Contains(body, `"problems"`) {
		t.Fatalf("bad reload: %d %s, want 400 naming mode", code, body)
	}
	waitRequests(100)

	// 3. The API removes member a: no request reaches it afterwards.
	rewrite(conf(addr(mb)))
	if code, body := post(); code != 200 || !strings.Contains(body, "removed") {
		t.Fatalf("reload: %d %s", code, body)
	}
	waitRequests(50)
	aAfter := hitsA.Load()
	waitRequests(200)
	if hitsA.Load() != aAfter {
		t.Errorf("the removed member got %d requests after its reload", hitsA.Load()-aAfter)
	}

	// 4. tether ctl reload brings a back.
	rewrite(conf(addr(ma), addr(mb)))
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"ctl", "--admin", api, "reload"}, &out, &errOut); code != 0 {
		t.Fatalf("ctl reload: %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "added back") {
		t.Errorf("ctl reload printed %q, want the member added back", out.String())
	}
	socktest.WaitFor(t, 5*time.Second, "requests on the member added back", func() bool { return hitsA.Load() > aAfter+10 })

	close(quit)
	wg.Wait()
	proc.stop()
	t.Logf("%d requests, %d failed; member a %d, b %d", ok.Load(), failed.Load(), hitsA.Load(), hitsB.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed; first: %s", failed.Load(), *firstErr.Load())
	}
}
