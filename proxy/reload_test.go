package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func mustParse(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	return cfg
}

// poolTOML is pool name's table: members, no health checks (members see
// only the proxied traffic).
func poolTOML(name string, members ...string) string {
	ms := make([]string, len(members))
	for i, m := range members {
		ms[i] = fmt.Sprintf("{ address = %q }", m)
	}
	return fmt.Sprintf("[pool.%s]\nmembers = [%s]\n[pool.%s.health]\ntype = \"none\"\n", name, strings.Join(ms, ", "), name)
}

// reloadConfigs are the two configs TestReloadUnderLoad alternates: B
// changes web's client profile, replaces member two by member three, and
// has virtual server "side" where A has "extra".
func reloadConfigs(web, extra, side string, m1, m2, m3 string) (a, b string) {
	const common = `
[log]
access = false
[tcp_profile.client_a]
idle_timeout = "60s"
keepalive_idle = "30s"
[tcp_profile.client_b]
idle_timeout = "50s"
keepalive_idle = "20s"
`
	vs := func(name, listen, mode, client string) string {
		return fmt.Sprintf("[[virtual_server]]\nname = %q\nlisten = %q\nmode = %q\npool = \"p\"\nclient_profile = %q\n", name, listen, mode, client)
	}
	a = common + poolTOML("p", m1, m2) + vs("web", web, "http", "client_a") + vs("extra", extra, "tcp", "client_a")
	b = common + poolTOML("p", m1, m3) + vs("web", web, "http", "client_b") + vs("side", side, "http", "client_b")
	return a, b
}

// 20 reloads alternate between two configs while keepalive and
// short-connection clients run against the virtual server both have: no
// request fails, no connection is refused, the member both configs keep
// sees only the conns the load needs (its pooled conns survive every
// reload), the removed member gets no request after its reload, and each
// added virtual server serves.
func TestReloadUnderLoad(t *testing.T) {
	var m1Reqs, m2Reqs, m3Reqs atomic.Int64
	answer := func(n *atomic.Int64, name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, name)
		}
	}
	m1 := startHTTPBackend(t, answer(&m1Reqs, "m1"), nil)
	m2 := startHTTPBackend(t, answer(&m2Reqs, "m2"), nil)
	m3 := startHTTPBackend(t, answer(&m3Reqs, "m3"), nil)
	web, extra, side := socktest.FreeAddr(t), socktest.FreeAddr(t), socktest.FreeAddr(t)
	cfgA, cfgB := reloadConfigs(web, extra, side, m1.Addr(), m2.Addr(), m3.Addr())
	p := startProxy(t, cfgA)

	const keepaliveClients, shortClients = 4, 2
	var (
		wg                  sync.WaitGroup
		ok, failed, refused atomic.Int64
		firstErr            atomic.Pointer[string]
		stop                = make(chan struct{})
	)
	fail := func(err error, counter *atomic.Int64) {
		counter.Add(1)
		s := err.Error()
		firstErr.CompareAndSwap(nil, &s)
	}
	load := func(keepalive bool) {
		defer wg.Done()
		c := proxyClient(keepalive)
		defer c.CloseIdleConnections()
		for i := 0; i < 20000; i++ { // bounded; stop ends it first
			select {
			case <-stop:
				return
			default:
			}
			method, body := http.MethodGet, io.Reader(nil)
			if i%3 == 0 {
				method, body = http.MethodPost, strings.NewReader("payload")
			}
			req, _ := http.NewRequest(method, "http://"+web+"/", body)
			resp, err := c.Do(req)
			if err != nil {
				if strings.Contains(err.Error(), "connection refused") {
					fail(err, &refused)
				} else {
					fail(err, &failed)
				}
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || (string(b) != "m1" && string(b) != "m2" && string(b) != "m3") {
				fail(fmt.Errorf("status %d body %q", resp.StatusCode, b), &failed)
				continue
			}
			ok.Add(1)
		}
	}
	for range keepaliveClients {
		wg.Add(1)
		go load(true)
	}
	for range shortClients {
		wg.Add(1)
		go load(false)
	}

	cfgs := []*config.Config{mustParse(t, cfgB), mustParse(t, cfgA)}
	for i := range 20 {
		before := ok.Load()
		socktest.WaitFor(t, 10*time.Second, "requests between reloads", func() bool { return ok.Load() >= before+50 })
		cfg := cfgs[i%2]
		changes, err := p.srv.Reload(context.Background(), cfg)
		if err != nil {
			t.Fatalf("reload %d: %v", i+1, err)
		}
		if i < 2 {
			t.Logf("reload %d changes: %q", i+1, changes)
		}
		// The virtual server only this config has serves at once.
		if i%2 == 0 {
			if got := getBody(t, "http://"+side+"/"); got != "m1" && got != "m3" {
				t.Fatalf("reload %d: side answered %q", i+1, got)
			}
			m2Before := m2Reqs.Load()
			socktest.WaitFor(t, 10*time.Second, "requests after the reload", func() bool { return ok.Load() >= before+100 })
			// Requests already sent to m2 may finish; none starts there later.
			time.Sleep(50 * time.Millisecond)
			settled := m2Reqs.Load()
			socktest.WaitFor(t, 10*time.Second, "more requests", func() bool { return ok.Load() >= before+200 })
			if m2Reqs.Load() != settled {
				t.Fatalf("reload %d: the removed member got %d requests after it was removed (%d before)", i+1, m2Reqs.Load()-settled, m2Before)
			}
		} else {
			c, err := net.DialTimeout("tcp", extra, 2*time.Second)
			if err != nil {
				t.Fatalf("reload %d: extra: %v", i+1, err)
			}
			c.Close()
		}
	}
	close(stop)
	wg.Wait()

	t.Logf("requests: %d ok, %d failed, %d refused; member conns: m1 %d, m2 %d, m3 %d; requests m1 %d m2 %d m3 %d",
		ok.Load(), failed.Load(), refused.Load(), m1.conns.Load(), m2.conns.Load(), m3.conns.Load(), m1Reqs.Load(), m2Reqs.Load(), m3Reqs.Load())
	if failed.Load() != 0 || refused.Load() != 0 {
		t.Fatalf("%d failed, %d refused; first: %s", failed.Load(), refused.Load(), *firstErr.Load())
	}
	// web's load needs at most one member conn per client in flight at
	// once; a reload that dropped web's ConnPool or m1's conns would open
	// new ones each time. m1's other conns are the checks': one http
	// request through "side" (a ConnPool of its own) and one tcp relay
	// through "extra" after each reload.
	st := p.srv.VirtualServer("web").ReuseStats()
	if st[0].Address != m1.Addr() {
		t.Fatalf("web's first member is %s, want m1", st[0].Address)
	}
	if clients := int64(keepaliveClients + shortClients); int64(st[0].Opened) > clients || m1.conns.Load() > clients+20 {
		t.Errorf("m1: web opened %d conns (at most %d), m1 accepted %d (at most %d): pooled conns did not survive the reloads",
			st[0].Opened, clients, m1.conns.Load(), clients+20)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	return getWith(t, proxyClient(false), url)
}

// A keepalive client's next request after a reload goes to the pool the new
// config names, on the same client connection.
func TestReloadSendsAKeepaliveClientsNextRequestToTheNewPool(t *testing.T) {
	one := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "one") }, nil)
	two := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "two") }, nil)
	web := socktest.FreeAddr(t)
	conf := func(poolName string) string {
		return poolTOML("one", one.Addr()) + poolTOML("two", two.Addr()) + fmt.Sprintf(`
[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = %q
`, web, poolName)
	}
	p := startProxy(t, conf("one"))
	c := proxyClient(true)
	defer c.CloseIdleConnections()
	if got := getWith(t, c, "http://"+web+"/"); got != "one" {
		t.Fatalf("before: %q", got)
	}
	if _, err := p.srv.Reload(context.Background(), mustParse(t, conf("two"))); err != nil {
		t.Fatal(err)
	}
	if got := getWith(t, c, "http://"+web+"/"); got != "two" {
		t.Fatalf("after the reload the keepalive client's request went to %q, want two", got)
	}
	if n := p.srv.VirtualServer("web").Stats().Accepted; n != 1 {
		t.Errorf("client conns accepted: %d, want 1 (the same keepalive conn)", n)
	}
	// The conn the replaced virtual server still serves is listed under the
	// name, with the member conn of the new pool while a request runs (none
	// now: shared reuse).
	if total, conns := p.srv.VirtualServer("web").Connections(0); total != 1 || len(conns) != 1 {
		t.Errorf("connections listed after the reload: %d, want the keepalive conn", total)
	}
}

func getWith(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A reload that cannot bind a new listener changes nothing: the error names
// it, the old virtual servers go on serving, and the half-built new ones are
// gone (their port is free again).
func TestFailedReloadKeepsTheOldConfig(t *testing.T) {
	member := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	web, fresh := socktest.FreeAddr(t), socktest.FreeAddr(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	conf := func(extra string) string {
		return poolTOML("p", member.Addr()) + fmt.Sprintf(`
[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = "p"
%s`, web, extra)
	}
	p := startProxy(t, conf(""))
	bad := conf(fmt.Sprintf(`
[[virtual_server]]
name = "fresh"
listen = %q
pool = "p"
[[virtual_server]]
name = "clash"
listen = %q
pool = "p"
`, fresh, busy.Addr()))
	_, err = p.srv.Reload(context.Background(), mustParse(t, bad))
	if err == nil || !strings.Contains(err.Error(), `"clash"`) {
		t.Fatalf("reload error %v, want one naming virtual_server \"clash\"", err)
	}
	if got := getBody(t, "http://"+web+"/"); got != "ok" {
		t.Errorf("the old config answered %q", got)
	}
	if len(p.srv.VirtualServers()) != 1 {
		t.Errorf("virtual servers after the failed reload: %d, want 1", len(p.srv.VirtualServers()))
	}
	ln, err := net.Listen("tcp", fresh)
	if err != nil {
		t.Errorf("the failed reload left %s bound: %v", fresh, err)
	} else {
		ln.Close()
	}
}

// A virtual server the new config drops stops accepting, and its open
// connections get shutdown_timeout: an idle keepalive conn is closed, a
// tcp relay in progress is cut when the time is up.
func TestReloadRemovingAVirtualServerDrainsItsConnections(t *testing.T) {
	echo := socktest.Start(t, socktest.Echo)
	web, gone := socktest.FreeAddr(t), socktest.FreeAddr(t)
	conf := func(withGone bool) string {
		s := "[global]\nshutdown_timeout = \"500ms\"\n" + poolTOML("p", echo.Addr()) + fmt.Sprintf(`
[[virtual_server]]
name = "web"
listen = %q
pool = "p"
`, web)
		if withGone {
			s += fmt.Sprintf("[[virtual_server]]\nname = \"gone\"\nlisten = %q\npool = \"p\"\n", gone)
		}
		return s
	}
	p := startProxy(t, conf(true))
	c, err := net.DialTimeout("tcp", gone, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := p.srv.Reload(context.Background(), mustParse(t, conf(false))); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", gone, time.Second); err == nil {
		t.Error("the removed virtual server still accepts")
	}
	// The relay goes on until shutdown_timeout, then is cut.
	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatalf("the relay was cut at once: %v", err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("the relay was cut at once: %v", err)
	}
	_, err = c.Read(buf)
	if err == nil {
		t.Fatal("the relay of the removed virtual server was not cut")
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("cut after %v, want about shutdown_timeout (500ms)", took)
	}
}

// A drained member's tcp relays go on until the pool's member_drain_timeout, then
// tether closes them; new connections go to the other member.
func TestDrainedMembersRelaysEndAtDrainTimeout(t *testing.T) {
	one := socktest.Start(t, socktest.Echo)
	two := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "", "member_drain_timeout = \"400ms\"", one.Addr(), two.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	echoOnce := func(msg string) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := echoOnce("a"); err != nil {
		t.Fatal(err)
	}
	m := p.srv.Pool("p").Members()[0]
	if one.Accepted() == 0 {
		m = p.srv.Pool("p").Members()[1]
	}
	start := time.Now()
	m.SetState(pool.AdminDraining)
	if err := echoOnce("b"); err != nil {
		t.Fatalf("the relay ended at once: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err == nil {
		t.Fatal("read data after the drain; want the relay closed")
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("relay closed after %v, want about member_drain_timeout (400ms)", took)
	}
}
