package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadSpec is a strict HTTP/1.1 load: clients that each keep one conn
// (or open one per request), send requests one at a time, and never retry
// (net/http's client retries some failures itself, which would hide
// tether's). Every load is bounded by Requests per client and by Duration.
type loadSpec struct {
	NS, Addr  string        // the clients' namespace and tether's address
	Clients   int           // concurrent clients
	Requests  int           // per client (0: until Duration)
	Duration  time.Duration // bound on the whole load
	Close     bool          // one request per conn (Connection: close)
	PostEvery int           // every Nth request is a POST with a 1 KiB body (0: none)
	Path      string        // request target (default "/")
	Timeout   time.Duration // per request: longer is a hung client (default 10 s)
	Pause     time.Duration // between a client's requests
}

// loadResult says how every request ended.
type loadResult struct {
	Sent      int
	Status    map[int]int // answers by status
	ByMember  map[string]int
	Transport int      // no answer: the conn failed (reset, EOF, refused)
	Hung      int      // no answer within Timeout
	Errors    []string // the first few transport errors
	PostsOK   int      // POSTs answered 200
	Latencies []time.Duration
	ids       []string // X-Req-Id of every request sent, in no order
}

// OK counts 200 answers.
func (r *loadResult) OK() int { return r.Status[200] }

// P99 is the 99th percentile of the answered requests' latencies.
func (r *loadResult) P99() time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), r.Latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[(len(l)*99)/100]
}

func (r *loadResult) String() string {
	return fmt.Sprintf("sent %d, status %v, by member %v, transport errors %d, hung %d, errors %q",
		r.Sent, r.Status, r.ByMember, r.Transport, r.Hung, r.Errors)
}

// load is a running loadSpec.
type load struct {
	spec   loadSpec
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    loadResult
}

// startLoad starts spec's clients; stop (or the test's end) ends them.
func startLoad(t *testing.T, spec loadSpec) *load {
	t.Helper()
	if spec.Path == "" {
		spec.Path = "/"
	}
	if spec.Timeout == 0 {
		spec.Timeout = 10 * time.Second
	}
	if spec.Duration == 0 {
		spec.Duration = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Duration)
	ld := &load{spec: spec, cancel: cancel, res: loadResult{Status: map[int]int{}, ByMember: map[string]int{}}}
	for c := 0; c < spec.Clients; c++ {
		ld.wg.Add(1)
		go ld.client(ctx, c)
	}
	t.Cleanup(func() { ld.stop() })
	return ld
}

// stop ends the load (each client finishes the request it is in) and
// returns the results.
func (ld *load) stop() loadResult {
	ld.cancel()
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.res
}

// wait lets the load run to its bounds and returns the results.
func (ld *load) wait() loadResult {
	ld.wg.Wait()
	return ld.stop()
}

func (ld *load) client(ctx context.Context, id int) {
	defer ld.wg.Done()
	var c *net.TCPConn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for n := 0; ld.spec.Requests == 0 || n < ld.spec.Requests; n++ {
		if ctx.Err() != nil {
			return
		}
		if c == nil {
			var err error
			c, err = dialTimeout(ld.spec.NS, ld.spec.Addr, ld.spec.Timeout)
			if err != nil {
				ld.note(nil, 0, "", err, 0, "")
				sleepCtx(ctx, 50*time.Millisecond)
				continue
			}
			br = bufio.NewReader(c)
		}
		post := ld.spec.PostEvery > 0 && n%ld.spec.PostEvery == ld.spec.PostEvery-1
		reqID := fmt.Sprintf("c%d-%d", id, n)
		start := time.Now()
		resp, member, err := ld.exchange(c, br, reqID, post)
		ld.note(resp, time.Since(start), member, err, boolInt(post), reqID)
		if err != nil || ld.spec.Close || (resp != nil && resp.Close) {
			c.Close()
			c = nil
		}
		if ld.spec.Pause > 0 {
			sleepCtx(ctx, ld.spec.Pause)
		}
	}
}

// exchange sends one request on c and reads its whole answer.
func (ld *load) exchange(c *net.TCPConn, br *bufio.Reader, reqID string, post bool) (*http.Response, string, error) {
	_ = c.SetDeadline(time.Now().Add(ld.spec.Timeout))
	var req bytes.Buffer
	method, body := "GET", []byte(nil)
	if post {
		method, body = "POST", patternBody(1024)
	}
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: faults\r\nX-Req-Id: %s\r\n", method, ld.spec.Path, reqID)
	if post {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	if ld.spec.Close {
		req.WriteString("Connection: close\r\n")
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := c.Write(req.Bytes()); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, resp.Header.Get("X-Member"), err
}

func (ld *load) note(resp *http.Response, took time.Duration, member string, err error, post int, reqID string) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	r := &ld.res
	if reqID != "" {
		r.Sent++
		r.ids = append(r.ids, reqID)
	}
	switch {
	case err != nil && isTimeout(err):
		r.Hung++
		r.addError(err)
	case err != nil:
		r.Transport++
		r.addError(err)
	default:
		r.Status[resp.StatusCode]++
		if member != "" {
			r.ByMember[member]++
		}
		if resp.StatusCode == 200 && post == 1 {
			r.PostsOK++
		}
		r.Latencies = append(r.Latencies, took)
	}
}

func (r *loadResult) addError(err error) {
	if len(r.Errors) < 5 {
		r.Errors = append(r.Errors, err.Error())
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// echoExact sends n bytes of pattern through addr (from namespace ns) to a
// member's echo port while reading them back, half-closes, and wants the
// same n bytes back then EOF, all within d.
func echoExact(ns, addr string, n int, d time.Duration) error {
	c, err := dialTimeout(ns, addr, d)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	want := patternBody(n)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d of %d bytes: %w", len(got), n, rerr)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < n && got[i] == want[i] {
			i++
		}
		return fmt.Errorf("echo differs: got %d bytes, want %d, first difference at %d", len(got), n, i)
	}
	return nil
}

// httpPool is the usual config of the suite's http tests: pool "web" over
// the lab's members on :80 with tcp health checks every 500 ms.
func httpPool(members int, extra string) string {
	var b strings.Builder
	b.WriteString("[pool.web]\n" + extra + "\n[pool.web.health]\ntype = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\nrise = 1\nfall = 2\n")
	for i := 1; i <= members; i++ {
		fmt.Fprintf(&b, "[[pool.web.members]]\naddress = \"%s:%d\"\n", memberIP(i), memberHTTPPort)
	}
	return b.String()
}

// webAndEcho is the suite's usual config over the lab's first members
// members: pool "web" (httpPool, webPool in its table) behind virtual
// server "web" (http on lbClientSide:8080) and pool "echo" over the
// members' echo ports behind virtual server "echo" (tcp on
// lbClientSide:7007). echoPool goes into [pool.echo] (keys, then any
// [pool.echo.*] table), webVS and echoVS into each virtual server's table
// (keys, then any subtable such as [virtual_server.http]).
func webAndEcho(members int, webPool, echoPool, webVS, echoVS string) string {
	var b strings.Builder
	b.WriteString(httpPool(members, webPool))
	fmt.Fprintf(&b, "\n[pool.echo]\n%s\n", echoPool)
	for i := 1; i <= members; i++ {
		fmt.Fprintf(&b, "[[pool.echo.members]]\naddress = \"%s:%d\"\n", memberIP(i), memberEchoPort)
	}
	fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"web\"\nlisten = \"%s:8080\"\nmode = \"http\"\npool = \"web\"\n%s\n", lbClientSide, webVS)
	fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"echo\"\nlisten = \"%s:7007\"\nmode = \"tcp\"\npool = \"echo\"\n%s\n", lbClientSide, echoVS)
	return b.String()
}
