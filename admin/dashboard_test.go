package admin

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// get makes a plain GET of the admin API's path (no token) and returns the
// response with its body read.
func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var assetRef = regexp.MustCompile(`(?:src|href)="([^"]*)"`)

func TestDashboardPageIsServedWithItsAssetsAndACSP(t *testing.T) {
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	e := startEnv(t, "", "shared", a.Addr(), b.Addr())

	resp, page := get(t, e.base+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "http") || strings.Contains(csp, "*") {
		t.Errorf("CSP allows more than this origin: %q", csp)
	}

	// Every asset the page names is on this origin and served with its type.
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", "": "text/plain; charset=utf-8"}
	refs := assetRef.FindAllStringSubmatch(string(page), -1)
	if len(refs) < 5 {
		t.Fatalf("index.html names %d assets, want the favicon, 2 stylesheets, 2 scripts and the LICENSE: %q", len(refs), refs)
	}
	for _, m := range refs {
		ref := m[1]
		if !strings.HasPrefix(ref, "/ui/") {
			t.Errorf("index.html refers to %q, not to an asset under /ui/ of its own origin", ref)
			continue
		}
		resp, body := get(t, e.base+ref)
		if want := types[path.Ext(ref)]; resp.StatusCode != 200 || resp.Header.Get("Content-Type") != want || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %q", ref, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", ref)
		}
	}
	// Every embedded file but the page is served under /ui/.
	err := fs.WalkDir(uiFS, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "ui/index.html" {
			return err
		}
		if resp, _ := get(t, e.base+"/"+p); resp.StatusCode != 200 {
			t.Errorf("embedded %s: GET /%s answers %d", p, p, resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A revalidation is answered 304.
	if resp, _ := get(t, e.base+"/ui/dashboard.js", "If-None-Match", resp.Header.Get("ETag")); resp.Header.Get("ETag") == "" {
		t.Error("no ETag on an asset")
	} else if resp2, _ := get(t, e.base+"/ui/dashboard.js", "If-None-Match", resp.Header.Get("ETag")); resp2.StatusCode != http.StatusNotModified {
		t.Errorf("revalidating dashboard.js: %d, want 304", resp2.StatusCode)
	}

	// Anything else is a JSON 404; other methods on the page are 405.
	for _, p := range []string{"/index.html", "/ui/", "/ui/index.html", "/ui/nope.js", "/ui/vendor/uplot/VERSION", "/dashboard", "/api/v1/nope"} {
		if code := e.call(t, "GET", p, nil); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	if code := e.call(t, "POST", "/", nil); code != 405 {
		t.Errorf("POST /: %d, want 405", code)
	}
	if code := e.call(t, "POST", "/ui/dashboard.js", nil); code != 405 {
		t.Errorf("POST /ui/dashboard.js: %d, want 405", code)
	}
}

// allowedURLs are the only absolute URLs the embedded files may hold, and
// none is loaded: an XML namespace and uPlot's banner comment.
var allowedURLs = []string{
	`xmlns="http://www.w3.org/2000/svg"`,
	`/*! https://github.com/leeoniya/uPlot (v1.6.32) */`,
}

var absoluteURL = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)

func TestDashboardFilesReferToNoOtherOrigin(t *testing.T) {
	n := 0
	err := fs.WalkDir(uiFS, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFS.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		text := string(b)
		for _, ok := range allowedURLs {
			text = strings.ReplaceAll(text, ok, "")
		}
		if p == "ui/vendor/uplot/LICENSE" {
			return nil // text, never loaded (and it names no URL today)
		}
		for _, m := range absoluteURL.FindAllStringIndex(text, -1) {
			lo, hi := max(0, m[0]-40), min(len(text), m[1]+40)
			t.Errorf("%s refers to another origin: …%s…", p, text[lo:hi])
		}
		if strings.Contains(strings.ToLower(text), "http://") || strings.Contains(strings.ToLower(text), "https://") {
			t.Errorf("%s holds an http(s):// URL", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Errorf("walked %d embedded files, want the 7 of the dashboard", n)
	}
}

func TestDashboardShellNeedsNoTokenButTheAPIDoes(t *testing.T) {
	a := newHTTPBackend(t, "a")
	e := startEnv(t, "s3cret-token-for-the-test", "shared", a.Addr())
	for _, p := range []string{"/", "/ui/dashboard.js"} {
		if resp, _ := get(t, e.base+p); resp.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d, want 200 (the shell holds no data)", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/api/v1/pools", "/api/v1/virtual-servers", "/ui/../api/v1/pools"} {
		if resp, _ := get(t, e.base+p); resp.StatusCode != 401 {
			t.Errorf("GET %s without a token: %d, want 401", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", e.base+"/", nil)
	req.Header.Set("X-Tether", "1")
	if code := do(t, req, nil); code != 401 {
		t.Errorf("POST / without a token: %d, want 401", code)
	}
}

func TestVirtualServersReportSocketsRequestsAndReuse(t *testing.T) {
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	e := startEnv(t, "", "shared", a.Addr(), b.Addr())
	cl := dialWeb(t, e)
	for range 4 {
		cl.get(t)
	}
	socktest.WaitFor(t, 5*time.Second, "the 4 requests to be counted", func() bool {
		return e.srv.VirtualServer("web").RequestStats().Count == 4
	})
	vss := getVirtualServers(t, e)
	web, raw := vss[0], vss[1]
	if web.Requests == nil || web.Requests.Total != 4 || web.Requests.ByClass["2xx"] != 4 || len(web.Requests.ByClass) != 5 {
		t.Errorf("web requests: %+v, want 4 in all, 4 2xx, 5 classes", web.Requests)
	}
	if r := web.PoolReuse; r == nil || r.Opened+r.Reused != 4 || r.Opened == 0 {
		t.Errorf("web pool_reuse: %+v, want opened+reused = 4 requests, opened > 0", r)
	}
	for _, vs := range vss {
		if vs.Sockets == nil {
			t.Fatalf("%s: no sockets census", vs.Name)
		}
		if len(vs.Sockets.Client) != 11 || len(vs.Sockets.Server) != 11 {
			t.Errorf("%s sockets: %d client and %d server states, want 11 each", vs.Name, len(vs.Sockets.Client), len(vs.Sockets.Server))
		}
		if vs.Sockets.Client["LISTEN"] != 1 {
			t.Errorf("%s: %d LISTEN sockets on the client side, want its listener", vs.Name, vs.Sockets.Client["LISTEN"])
		}
	}
	if web.Sockets.Client["ESTABLISHED"] < 1 || web.Sockets.Server["ESTABLISHED"] < 1 {
		t.Errorf("web sockets: %+v, want the open client conn and its pooled member conn ESTABLISHED", web.Sockets)
	}
	if raw.Requests != nil || raw.PoolReuse != nil {
		t.Errorf("tcp-mode raw has http counters: %+v %+v", raw.Requests, raw.PoolReuse)
	}
	// The same census as /metrics would show: raw has no conn at all.
	if raw.Sockets.Client["ESTABLISHED"] != 0 || raw.Sockets.Server["ESTABLISHED"] != 0 {
		t.Errorf("raw sockets: %+v, want none established", raw.Sockets)
	}
}

func getVirtualServers(t *testing.T, e *env) []vsBody {
	t.Helper()
	var out struct {
		VirtualServers []vsBody `json:"virtual_servers"`
	}
	if code := e.call(t, "GET", "/api/v1/virtual-servers", &out); code != 200 {
		t.Fatalf("/api/v1/virtual-servers: %d", code)
	}
	return out.VirtualServers
}

// ---- headless Chromium ----------------------------------------------------

// browserLog gathers what a page must not produce: console errors and
// warnings, exceptions, browser log errors (CSP violations, failed loads)
// and requests that failed or answered >= 400. Paths in allow are expected
// to answer errors (POST /api/v1/reload before that endpoint exists).
type browserLog struct {
	mu       sync.Mutex
	problems []string
	urls     map[network.RequestID]string
	allow    []string
}

func (l *browserLog) allowed(url string) bool {
	for _, p := range l.allow {
		if strings.HasSuffix(url, p) {
			return true
		}
	}
	return false
}

// listen is called by chromedp on its reading goroutine: only appends.
func (l *browserLog) listen(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			l.problems = append(l.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		l.problems = append(l.problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *log.EventEntryAdded:
		if e := ev.Entry; (e.Level == log.EntryLevelError || e.Level == log.EntryLevelWarning) && !l.allowed(e.URL) {
			l.problems = append(l.problems, fmt.Sprintf("browser log (%s, %s): %s %s", e.Level, e.Source, e.Text, e.URL))
		}
	case *network.EventRequestWillBeSent:
		l.urls[ev.RequestID] = ev.Request.URL
	case *network.EventLoadingFailed:
		l.problems = append(l.problems, fmt.Sprintf("request %s failed: %s %s", l.urls[ev.RequestID], ev.ErrorText, ev.BlockedReason))
	case *network.EventResponseReceived:
		if r := ev.Response; r.Status >= 400 && !l.allowed(r.URL) {
			l.problems = append(l.problems, fmt.Sprintf("request %s answered %d", r.URL, r.Status))
		}
	}
}

func (l *browserLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.problems
	l.problems = nil
	return p
}

// startBrowser starts headless Chromium (skipped locally without it, a
// failure under CI) and returns a tab's context, with the log of its
// problems. At the test's end the tab and the browser are closed and the
// browser process waited for, so no goroutine of chromedp outlives the test.
func startBrowser(t *testing.T, allow ...string) (context.Context, *browserLog) {
	t.Helper()
	exe := socktest.Need(t, "chromium", "chromium")
	dir := t.TempDir() // removed after the browser exited (cleanups run last-in first-out)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(dir),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 1600),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()  // closes the tab
		acancel() // kills the browser and waits for it
	})
	// The first Do binds the browser's life to its context, so it gets the
	// tab's (no deadline); a start that hangs is ended by cancel.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", exe, err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		<-started
		t.Fatalf("%s did not start within 20 s", exe)
	}
	bl := &browserLog{urls: map[network.RequestID]string{}, allow: allow}
	if err := chromedp.Listen(ctx, bl.listen); err != nil {
		t.Fatal(err)
	}
	return ctx, bl
}

// domSnapshot is what the page shows, read from its data- attributes.
type domSnapshot struct {
	Refreshes int `json:"refreshes"`
	VS        map[string]struct {
		Fields  map[string]string            `json:"fields"`
		Sockets map[string]map[string]string `json:"sockets"`
	} `json:"vs"`
	Pools map[string]map[string]map[string]string `json:"pools"` // pool -> member -> field -> value
}

const snapshotJS = `(() => {
  const out = {refreshes: Number(document.body.dataset.refreshes), vs: {}, pools: {}};
  for (const card of document.querySelectorAll('section[data-vs]')) {
    const o = {fields: {}, sockets: {client: {}, server: {}}};
    for (const f of card.querySelectorAll('.figure[data-field]')) o.fields[f.dataset.field] = f.dataset.value;
    for (const td of card.querySelectorAll('td[data-side]')) o.sockets[td.dataset.side][td.dataset.state] = td.dataset.value;
    out.vs[card.dataset.vs] = o;
  }
  for (const p of document.querySelectorAll('section[data-pool]')) {
    const members = {};
    for (const tr of p.querySelectorAll('tr[data-member]')) {
      const m = {};
      for (const td of tr.querySelectorAll('td[data-field]')) m[td.dataset.field] = td.dataset.value;
      members[tr.dataset.member] = m;
    }
    out.pools[p.dataset.pool] = members;
  }
  return out;
})()`

// diffPageAndAPI compares what the page shows with the API's answer; ""
// when they agree.
func diffPageAndAPI(dom domSnapshot, vss []vsBody, pools []poolBody) string {
	var d []string
	for _, vs := range vss {
		card, ok := dom.VS[vs.Name]
		if !ok {
			d = append(d, "no card for virtual server "+vs.Name)
			continue
		}
		want := map[string]string{
			"client-active": strconv.FormatInt(vs.Connections.Active, 10),
			"accepted":      strconv.FormatUint(vs.Connections.Accepted, 10),
		}
		if vs.Requests != nil {
			want["requests-total"] = strconv.FormatUint(vs.Requests.Total, 10)
		}
		if vs.Sockets != nil {
			want["time-wait-client"] = strconv.Itoa(vs.Sockets.Client["TIME_WAIT"])
			want["time-wait-server"] = strconv.Itoa(vs.Sockets.Server["TIME_WAIT"])
			for side, states := range map[string]map[string]int{"client": vs.Sockets.Client, "server": vs.Sockets.Server} {
				for st, n := range states {
					if got := card.Sockets[side][st]; got != strconv.Itoa(n) {
						d = append(d, fmt.Sprintf("%s %s %s: page %q, API %d", vs.Name, side, st, got, n))
					}
				}
			}
		} else {
			d = append(d, vs.Name+": the API had no census")
		}
		for f, w := range want {
			if got := card.Fields[f]; got != w {
				d = append(d, fmt.Sprintf("%s %s: page %q, API %s", vs.Name, f, got, w))
			}
		}
	}
	for _, p := range pools {
		for _, m := range p.Members {
			got := dom.Pools[p.Name][m.Address]
			want := map[string]string{"state": m.State, "admin": m.Admin, "health": m.Health,
				"active": strconv.Itoa(m.Active), "idle": strconv.Itoa(m.Idle)}
			for f, w := range want {
				if got[f] != w {
					d = append(d, fmt.Sprintf("pool %s member %s %s: page %q, API %q", p.Name, m.Address, f, got[f], w))
				}
			}
		}
	}
	slices.Sort(d)
	return strings.Join(d, "\n")
}

// refreshes reads how many refreshes the page completed.
func refreshes(t *testing.T, ctx context.Context) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.body.dataset.refreshes)`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitRefreshes waits until the page completed at least n refreshes.
func waitRefreshes(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`Number(document.body.dataset.refreshes) >= %d`, n),
		chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the page's refresh %d: %v", n, err)
	}
}

// shortRequest makes one request on a new conn with Connection: close.
func shortRequest(t *testing.T, e *env) {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.ListenAddr("web").String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c) // to the proxy's close
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("short request: %q %v", b, err)
	}
}

// artifactPath is where a test writes a file for people to look at:
// $TETHER_ARTIFACT_DIR when set (CI keeps it), else a temp dir that stays.
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("TETHER_ARTIFACT_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "tether-artifacts-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

func TestDashboardInChromiumShowsWhatTheAPIReports(t *testing.T) {
	ctx, blog := startBrowser(t, "/api/v1/reload")
	ctx, cancel := context.WithTimeout(ctx, 50*time.Second) // the test's own bound; the browser is not bound to it
	defer cancel()

	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	e := startEnv(t, "", "shared", a.Addr(), b.Addr())
	long1, long2 := dialWeb(t, e), dialWeb(t, e)
	for range 5 {
		long1.get(t)
	}
	for range 3 {
		long2.get(t)
	}
	for range 3 {
		shortRequest(t, e)
	}
	socktest.WaitFor(t, 5*time.Second, "the 11 requests to be counted", func() bool {
		return e.srv.VirtualServer("web").RequestStats().Count == 11
	})

	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/")); err != nil {
		t.Fatal(err)
	}
	waitRefreshes(t, ctx, 2)

	t.Run("LoadsWithoutConsoleErrorsOrFailedRequests", func(t *testing.T) {
		if p := blog.take(); len(p) > 0 {
			t.Errorf("the page's load produced:\n%s", strings.Join(p, "\n"))
		}
		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil || title != "tether dashboard" {
			t.Errorf("title %q, %v", title, err)
		}
		charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('section[data-vs] .uplot canvas').length`))
		if err != nil || charts < 2 {
			t.Errorf("%d uPlot canvases, want one per virtual server (uPlot not loaded?): %v", charts, err)
		}
	})

	t.Run("FiguresMatchTheAPI", func(t *testing.T) {
		// The page and the API are read a moment apart: a mismatch is
		// retried after the page's next refresh, until a deadline.
		deadline := time.Now().Add(15 * time.Second)
		for {
			dom, err := chromedp.Run(ctx, chromedp.Evaluate[domSnapshot](snapshotJS))
			if err != nil {
				t.Fatal(err)
			}
			diff := diffPageAndAPI(dom, getVirtualServers(t, e), getPools(t, e))
			if diff == "" {
				web := dom.VS["web"]
				if est, _ := strconv.Atoi(web.Sockets["client"]["ESTABLISHED"]); web.Fields["requests-total"] != "11" || web.Fields["accepted"] != "5" || est < 2 {
					t.Errorf("web shows %v / sockets %v; want 11 requests on 5 client conns, 2 of them open", web.Fields, web.Sockets["client"])
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page and the API disagree:\n%s", diff)
			}
			waitRefreshes(t, ctx, dom.Refreshes+1)
		}
	})

	// Traffic while the page refreshes, so its charts have rates to show
	// (paced, bounded in time and count). A keepalive conn carries 20
	// requests (under the profile's 100 per conn), then a new one takes over.
	target := refreshes(t, ctx) + 3
	tick := time.NewTicker(20 * time.Millisecond)
	var cl *client
	for i := 0; i < 1000 && refreshes(t, ctx) < target; i++ {
		<-tick.C
		if i%20 == 0 {
			if cl != nil {
				_ = cl.c.Close()
			}
			cl = dialWeb(t, e)
			shortRequest(t, e)
		}
		cl.get(t)
	}
	tick.Stop()
	waitRefreshes(t, ctx, target)

	t.Run("DrainButtonDrainsTheMember", func(t *testing.T) {
		member := a.Addr()
		sel := fmt.Sprintf(`section[data-pool="p"] tr[data-member=%q] button[data-action="drain"]`, member)
		dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening) // subscribed before the click
		clicked := make(chan error, 1)
		go func() { clicked <- chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))) }()
		for ev, err := range dialogs {
			if err != nil {
				t.Fatalf("waiting for the confirm dialog: %v", err)
			}
			if ev.Type != page.DialogTypeConfirm || !strings.Contains(ev.Message, member) {
				t.Errorf("dialog %s %q, want a confirm naming %s", ev.Type, ev.Message, member)
			}
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				t.Fatal(err)
			}
			break
		}
		if err := <-clicked; err != nil {
			t.Fatalf("clicking drain: %v", err)
		}
		socktest.WaitFor(t, 10*time.Second, "the API to report the member draining", func() bool {
			for _, m := range getPools(t, e)[0].Members {
				if m.Address == member {
					return m.State == "draining" && m.Admin == "draining"
				}
			}
			return false
		})
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
			`document.querySelector('section[data-pool="p"] tr[data-member=%q] td[data-field="admin"]').dataset.value === "draining"`, member),
			chromedp.WithPollingTimeout(10*time.Second)))
		if err != nil {
			t.Errorf("the page does not show the member draining: %v", err)
		}
	})

	t.Run("ReloadButtonShowsTheAPIResult", func(t *testing.T) {
		type shown struct {
			Status string   `json:"status"`
			Kind   string   `json:"kind"`
			Hidden bool     `json:"hidden"`
			Items  []string `json:"items"`
			Text   string   `json:"text"`
		}
		// click reloads and returns what the page shows once it shows
		// the answer with the given status.
		click := func(status int) shown {
			t.Helper()
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#reload`))); err != nil {
				t.Fatal(err)
			}
			if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('#reload-result').dataset.status === "%d"`, status),
				chromedp.WithPollingTimeout(10*time.Second))); err != nil {
				t.Fatalf("the page shows no reload result with status %d: %v", status, err)
			}
			got, err := chromedp.Run(ctx, chromedp.Evaluate[shown](`(() => {
				const b = document.querySelector('#reload-result');
				return {status: b.dataset.status, kind: b.dataset.kind, hidden: b.hidden,
					items: [...b.querySelectorAll('[data-field=reload-list] li')].map((li) => li.textContent),
					text: b.innerText};
			})()`))
			if err != nil {
				t.Fatal(err)
			}
			if got.Items == nil {
				got.Items = []string{}
			}
			return got
		}
		lastReload := func() Result {
			var st statusBody
			e.call(t, "GET", "/api/v1/status", &st)
			return st.LastReload
		}

		// A good file that adds a member: the page lists the changes.
		c := newHTTPBackend(t, "c")
		old, err := os.ReadFile(e.path)
		if err != nil {
			t.Fatal(err)
		}
		good := strings.Replace(string(old), "members = [", fmt.Sprintf("members = [{ address = %q }, ", c.Addr()), 1)
		e.write(t, good)
		got, res := click(200), lastReload()
		if !res.OK || !slices.ContainsFunc(res.Changes, func(s string) bool { return strings.Contains(s, c.Addr()) }) {
			t.Fatalf("the reload did not add member c: %+v", res)
		}
		if got.Hidden || got.Kind != "changes" || !slices.Equal(got.Items, res.Changes) {
			t.Errorf("page shows %s %q (hidden %v), the API's last reload changed %q", got.Kind, got.Items, got.Hidden, res.Changes)
		}

		// A bad file: the page lists every problem, with the status.
		e.write(t, strings.Replace(good, `mode = "http"`, `mode = "gopher"`, 1))
		got, res = click(400), lastReload()
		if res.OK || len(res.Problems) == 0 {
			t.Fatalf("the bad reload: %+v", res)
		}
		if got.Kind != "problems" || !slices.Equal(got.Items, res.Problems) || !strings.Contains(got.Text, "400") {
			t.Errorf("page shows %s %q (%q), the API's last reload failed with %q", got.Kind, got.Items, got.Text, res.Problems)
		}
		e.write(t, good)
	})

	t.Run("Screenshot", func(t *testing.T) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := artifactPath(t, "dashboard.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	})

	if p := blog.take(); len(p) > 0 {
		t.Errorf("the page produced, after its load:\n%s", strings.Join(p, "\n"))
	}
}

func TestDashboardInChromiumAsksForTheTokenOnce(t *testing.T) {
	// The first reads answer 401 until the token is given.
	ctx, blog := startBrowser(t, "/api/v1/virtual-servers", "/api/v1/pools")
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	const token = "s3cret-token-for-the-browser"
	a := newHTTPBackend(t, "a")
	e := startEnv(t, token, "shared", a.Addr())

	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS(`#token-form`))); err != nil {
		t.Fatalf("the page does not ask for the token: %v", err)
	}
	cards, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('section[data-vs]').length`))
	if err != nil || cards != 0 {
		t.Errorf("%d virtual servers shown without the token (%v)", cards, err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('section[data-vs]').length === 2 && document.querySelector('#token-form').hidden`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page shows no virtual server after the token: %v", err)
	}
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('tether.adminToken')`))
	if err != nil || kept != token {
		t.Errorf("sessionStorage holds %q (%v), want the token", kept, err)
	}
	cookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil || cookies != "" {
		t.Errorf("cookies %q (%v), want none", cookies, err)
	}
	// A page reload keeps the token for the tab: no second prompt.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitRefreshes(t, ctx, 2)
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#token-form').hidden && document.querySelectorAll('section[data-vs]').length === 2`))
	if err != nil || !hidden {
		t.Errorf("after a page reload the page asks again or shows nothing (%v)", err)
	}
	for _, p := range blog.take() {
		if !strings.Contains(p, "401") {
			t.Errorf("the page produced: %s", p)
		}
	}
}
