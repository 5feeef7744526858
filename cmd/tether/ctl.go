package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tetherproxy/tether/config"
)

// tether ctl: the admin API's command-line client. It only speaks HTTP to
// the API (admin/api.go has the shapes); it holds no proxy logic.

const ctlUsage = `usage: tether ctl [-c FILE | --admin URL] [--token-file F] [--json] COMMAND
commands:
  status                          version, uptime, config file and hash, last reload
  pools                           one row per member of every pool
  members POOL                    the members of one pool
  enable|disable|drain POOL ADDRESS
                                  set a member's admin state
  conns VS [--limit N]            the open connections of a virtual server, both sides
  reload                          reload the config file (the old config keeps running on a problem)
  upgrade                         hot binary upgrade: start the binary at tether's path anew; the new
                                  process takes the listeners, the old one drains; a new process that
                                  fails (bad config ...) leaves the old one serving (exit 1, why)
flags:
  -c FILE           find the API from the config's [admin] listen and token_file
  --admin URL       the API's address (default http://` + config.DefaultAdminListen + `)
  --token-file F    file holding the bearer token (default: the config's token_file)
  --json            print the API's JSON unchanged
`

const (
	ctlTimeout  = 10 * time.Second // per call: connect, request, whole response
	ctlMaxBody  = 32 << 20         // bytes read from a response at most
	ctlMaxLimit = 1 << 20          // conns --limit at most
)

// ctlUpgradeTimeout is upgrade's call timeout: the answer comes once the
// new process is ready or failed (upgradeTimeout at most).
const ctlUpgradeTimeout = upgradeTimeout + 30*time.Second

// ctlClient is one admin API to talk to.
type ctlClient struct {
	base  string // http://host:port, no trailing slash
	token string // "" = none
	hc    *http.Client
}

// errUsage marks an error that is the caller's (exit 2).
var errUsage = errors.New("usage")

func cmdCtl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	file := fs.String("c", "", "config `FILE`")
	adminURL := fs.String("admin", "", "admin API `URL`")
	tokenFile := fs.String("token-file", "", "bearer token `FILE`")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	limit := fs.Int("limit", 0, "conns: at most `N` connections (0 = the API's default)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage // flag printed why
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tether ctl: "+format+"\n\n%s", append(a, ctlUsage)...)
		return exitUsage
	}
	if len(pos) == 0 {
		return usageErr("no command")
	}
	cmd, rest := pos[0], pos[1:]
	want := map[string]int{"status": 0, "pools": 0, "members": 1, "enable": 2, "disable": 2, "drain": 2, "conns": 1, "reload": 0, "upgrade": 0}
	n, ok := want[cmd]
	switch {
	case !ok:
		return usageErr("unknown command %q", cmd)
	case len(rest) != n:
		return usageErr("%s takes %d argument(s), got %d", cmd, n, len(rest))
	case *file != "" && *adminURL != "":
		return usageErr("-c and --admin both say where the API is; give one")
	case *limit < 0 || *limit > ctlMaxLimit:
		return usageErr("--limit %d: want 1..%d", *limit, ctlMaxLimit)
	case *limit != 0 && cmd != "conns":
		return usageErr("--limit is for conns only")
	}

	timeout := ctlTimeout
	if cmd == "upgrade" {
		timeout = ctlUpgradeTimeout
	}
	c, err := newCtlClient(*file, *adminURL, *tokenFile, timeout)
	if err != nil {
		fmt.Fprintf(stderr, "tether ctl: %v\n", err)
		if errors.Is(err, errUsage) {
			return exitUsage
		}
		return exitError
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = c.run(ctx, cmd, rest, *limit, *asJSON, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tether ctl: %v\n", err)
		var ae *apiErr
		if errors.As(err, &ae) {
			for _, p := range ae.Problems {
				fmt.Fprintf(stderr, "  %s\n", p)
			}
		}
		return exitError
	}
	return exitOK
}

// parseInterleaved parses flags placed before, between or after the
// positional arguments (`ctl conns web --limit 5`), which flag.Parse alone
// stops at; it returns the positional ones in order. Each round consumes
// at least one argument.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// newCtlClient finds the API: --admin, or the config's [admin], or the
// default address; the token from --token-file, else the config's
// token_file. timeout bounds each call.
func newCtlClient(file, adminURL, tokenFile string, timeout time.Duration) (*ctlClient, error) {
	base := "http://" + config.DefaultAdminListen
	switch {
	case adminURL != "":
		u, err := parseAdminURL(adminURL)
		if err != nil {
			return nil, err
		}
		base = u
	case file != "":
		cfg, err := config.LoadFile(file)
		if err != nil {
			return nil, fmt.Errorf("invalid configuration:\n%w", err)
		}
		if cfg.Admin.Listen == "" {
			return nil, fmt.Errorf("%s: the admin API is off ([admin] listen = \"off\"); set [admin] listen to use tether ctl", file)
		}
		hostport, err := dialable(cfg.Admin.Listen)
		if err != nil {
			return nil, fmt.Errorf("%s: [admin] listen: %w; use --admin URL", file, err)
		}
		base = "http://" + hostport
		if tokenFile == "" {
			tokenFile = cfg.Admin.TokenFile
		}
	}
	c := &ctlClient{
		base: base,
		hc: &http.Client{
			Timeout: timeout,
			// One request per run: no idle conns (or their goroutines) left.
			Transport: &http.Transport{
				DialContext:           (&net.Dialer{Timeout: ctlTimeout}).DialContext,
				DisableKeepAlives:     true,
				ResponseHeaderTimeout: timeout,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		if c.token = strings.TrimSpace(string(b)); c.token == "" {
			return nil, fmt.Errorf("token file %q is empty", tokenFile)
		}
	}
	return c, nil
}

// parseAdminURL accepts http://host:port[/] or host:port.
func parseAdminURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("%w: --admin %q: want http://HOST:PORT", errUsage, s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// dialable turns a listen address into one to connect to: a wildcard
// host becomes loopback (the API listens there too); port 0 is unknowable.
func dialable(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if port == "0" {
		return "", fmt.Errorf("%q: port 0 is chosen at start and cannot be known here", listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// apiErr is an answer other than 2xx, with the API's error body.
type apiErr struct {
	Method, Path string
	Status       string
	Msg          string   `json:"error"`
	Problems     []string `json:"problems"`
}

func (e *apiErr) Error() string {
	return fmt.Sprintf("%s %s: %s: %s", e.Method, e.Path, e.Status, e.Msg)
}

// call makes one request and returns the body of a 2xx answer; any other
// answer is an *apiErr.
func (c *ctlClient) call(ctx context.Context, method, path string, query url.Values) ([]byte, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("X-Tether", "1")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s (is tether running, with [admin] listen there?): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, ctlMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if len(body) > ctlMaxBody {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, ctlMaxBody)
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	e := &apiErr{Method: method, Path: path, Status: resp.Status}
	if json.Unmarshal(body, e) != nil || e.Msg == "" {
		e.Msg = "not an admin API error: " + strconv.Quote(truncate(string(bytes.TrimSpace(body)), 200))
	}
	return nil, e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// run runs one command: the answer's JSON as is with asJSON, else a table.
func (c *ctlClient) run(ctx context.Context, cmd string, args []string, limit int, asJSON bool, out io.Writer) error {
	var (
		method = http.MethodGet
		path   string
		query  url.Values
		render func([]byte, io.Writer) error
	)
	switch cmd {
	case "status":
		path, render = "/api/v1/status", renderStatus
	case "pools":
		path, render = "/api/v1/pools", func(b []byte, w io.Writer) error { return renderPools(b, "", w) }
	case "members":
		path, render = "/api/v1/pools", func(b []byte, w io.Writer) error { return renderPools(b, args[0], w) }
	case "enable", "disable", "drain":
		method = http.MethodPost
		path = "/api/v1/pools/" + url.PathEscape(args[0]) + "/members/" + url.PathEscape(args[1]) + "/" + cmd
		render = renderSetState
	case "conns":
		path, query, render = "/api/v1/connections", url.Values{"virtual_server": {args[0]}}, renderConns
		if limit > 0 {
			query.Set("limit", strconv.Itoa(limit))
		}
	case "reload":
		method, path, render = http.MethodPost, "/api/v1/reload", renderReload
	case "upgrade":
		method, path, render = http.MethodPost, "/api/v1/upgrade", renderUpgrade
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	body, err := c.call(ctx, method, path, query)
	if err != nil {
		return err
	}
	if asJSON {
		if cmd == "members" {
			// Still refuse an unknown pool, as the table would.
			if err := renderPools(body, args[0], io.Discard); err != nil {
				return err
			}
		}
		_, err := out.Write(body)
		return err
	}
	if err := render(body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

type ctlStatus struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	ConfigPath    string    `json:"config_path"`
	ConfigSHA256  string    `json:"config_sha256"`
	LastReload    struct {
		At       time.Time `json:"at"`
		OK       bool      `json:"ok"`
		Problems []string  `json:"problems"`
	} `json:"last_reload"`
}

func renderStatus(body []byte, out io.Writer) error {
	var st ctlStatus
	if err := decode(body, &st); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	or := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	fmt.Fprintf(tw, "version\t%s\n", or(st.Version))
	fmt.Fprintf(tw, "uptime\t%s (since %s)\n", seconds(st.UptimeSeconds).Round(time.Second), st.Started.Format(time.RFC3339))
	fmt.Fprintf(tw, "config\t%s\n", or(st.ConfigPath))
	fmt.Fprintf(tw, "config sha256\t%s\n", or(st.ConfigSHA256))
	result := "ok"
	if !st.LastReload.OK {
		result = "FAILED"
	}
	fmt.Fprintf(tw, "last reload\t%s %s\n", st.LastReload.At.Format(time.RFC3339), result)
	for i, p := range st.LastReload.Problems {
		label := ""
		if i == 0 {
			label = "problems"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, p)
	}
	return tw.Flush()
}

type ctlPools struct {
	Pools []struct {
		Name    string `json:"name"`
		Members []struct {
			Address  string `json:"address"`
			State    string `json:"state"`
			Admin    string `json:"admin"`
			Health   string `json:"health"`
			Active   int    `json:"active"`
			Idle     int    `json:"idle"`
			Counters struct {
				Connects        uint64
				ConnectFailures uint64
				StaleDropped    uint64
				CheckFailures   uint64
			} `json:"counters"`
			Reuse map[string]struct {
				Reused      uint64
				StaleOnPeek uint64
			} `json:"reuse"`
		} `json:"members"`
	} `json:"pools"`
}

// renderPools prints one row per member, of every pool or of pool only.
func renderPools(body []byte, only string, out io.Writer) error {
	var ps ctlPools
	if err := decode(body, &ps); err != nil {
		return err
	}
	var names []string
	found := only == ""
	for _, p := range ps.Pools {
		names = append(names, p.Name)
		found = found || p.Name == only
	}
	if !found {
		return fmt.Errorf("no pool %q (pools: %s)", only, strings.Join(names, ", "))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tMEMBER\tSTATE\tADMIN\tHEALTH\tACTIVE\tIDLE\tCONNECTS\tCONNECT-FAIL\tREUSED\tSTALE\tCHECK-FAIL")
	for _, p := range ps.Pools {
		if only != "" && p.Name != only {
			continue
		}
		for _, m := range p.Members {
			reused, stale := "-", m.Counters.StaleDropped
			if m.Reuse != nil {
				var n uint64
				for _, r := range m.Reuse {
					n += r.Reused
					stale += r.StaleOnPeek
				}
				reused = strconv.FormatUint(n, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%d\n", p.Name, m.Address, m.State, m.Admin, m.Health,
				m.Active, m.Idle, m.Counters.Connects, m.Counters.ConnectFailures, reused, stale, m.Counters.CheckFailures)
		}
	}
	return tw.Flush()
}

func renderSetState(body []byte, out io.Writer) error {
	var r struct{ Pool, Address, Previous, Admin, State string }
	if err := decode(body, &r); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "pool %s member %s: %s -> %s (state now %s)\n", r.Pool, r.Address, r.Previous, r.Admin, r.State)
	return err
}

// ctlSide is one side of a connection in GET /api/v1/connections.
type ctlSide struct {
	Local       string  `json:"local"`
	Remote      string  `json:"remote"`
	State       string  `json:"state"`
	RTTSeconds  float64 `json:"rtt_seconds"`
	Retransmits uint64  `json:"retransmits"`
	Cwnd        uint64  `json:"cwnd"`
	Unacked     uint64  `json:"unacked"`
	BytesIn     uint64  `json:"bytes_in"`
	BytesOut    uint64  `json:"bytes_out"`
}

type ctlConns struct {
	VirtualServer string `json:"virtual_server"`
	Count         int    `json:"count"`
	Truncated     bool   `json:"truncated"`
	Connections   []struct {
		ID         uint64   `json:"id"`
		AgeSeconds float64  `json:"age_seconds"`
		Client     ctlSide  `json:"client"`
		Server     *ctlSide `json:"server"` // nil: no member conn now
	} `json:"connections"`
}

// renderConns prints one row per connection: the client side as
// remote->local (client to tether), the server side as local->remote
// (tether to member); IN is what tether read from that side, OUT what it
// wrote to it.
func renderConns(body []byte, out io.Writer) error {
	var cs ctlConns
	if err := decode(body, &cs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tCLIENT\tSTATE\tRTT\tRETRANS\tIN\tOUT\tSERVER\tSTATE\tRTT\tRETRANS\tIN\tOUT")
	side := func(s *ctlSide, clientSide bool) string {
		if s == nil {
			return "-\t-\t-\t-\t-\t-"
		}
		tuple := s.Local + "->" + s.Remote
		if clientSide {
			tuple = s.Remote + "->" + s.Local
		}
		return fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d", tuple, s.State, seconds(s.RTTSeconds).Round(time.Microsecond), s.Retransmits, s.BytesIn, s.BytesOut)
	}
	for _, c := range cs.Connections {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", c.ID, seconds(c.AgeSeconds).Round(100*time.Millisecond), side(&c.Client, true), side(c.Server, false))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	shown := fmt.Sprintf("%d connections", cs.Count)
	if cs.Truncated {
		shown = fmt.Sprintf("%d connections shown, truncated at the limit (count %d)", len(cs.Connections), cs.Count)
	}
	_, err := fmt.Fprintf(out, "virtual server %s: %s\n", cs.VirtualServer, shown)
	return err
}

func renderReload(body []byte, out io.Writer) error {
	var r struct {
		OK      bool      `json:"ok"`
		At      time.Time `json:"at"`
		Changes []string  `json:"changes"`
	}
	if err := decode(body, &r); err != nil {
		return err
	}
	if !r.OK {
		return errors.New(`reload answered 200 without "ok": true`)
	}
	if len(r.Changes) == 0 {
		_, err := fmt.Fprintf(out, "reloaded at %s: no changes\n", r.At.Format(time.RFC3339))
		return err
	}
	fmt.Fprintf(out, "reloaded at %s: %d changes\n", r.At.Format(time.RFC3339), len(r.Changes))
	for _, c := range r.Changes {
		fmt.Fprintf(out, "  %s\n", c)
	}
	return nil
}

func renderUpgrade(body []byte, out io.Writer) error {
	var r struct {
		OK     bool      `json:"ok"`
		At     time.Time `json:"at"`
		OldPID int       `json:"old_pid"`
		NewPID int       `json:"new_pid"`
	}
	if err := decode(body, &r); err != nil {
		return err
	}
	if !r.OK {
		return errors.New(`upgrade answered 200 without "ok": true`)
	}
	newPID := "?"
	if r.NewPID > 0 {
		newPID = strconv.Itoa(r.NewPID)
	}
	_, err := fmt.Fprintf(out, "upgraded at %s: pid %s serves; pid %d stopped accepting and drains\n", r.At.Format(time.RFC3339), newPID, r.OldPID)
	return err
}
