package admin

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// startServer runs a tcp virtual server "echo" on an echo backend and an
// http one "web" on an HTTP backend.
func startServer(t *testing.T) *proxy.Server {
	t.Helper()
	echo := socktest.Start(t, socktest.Echo)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(web.Close)
	toml := fmt.Sprintf(`
[pool.echo]
members = [ { address = %q } ]

[pool.web]
members = [ { address = %q } ]

[[virtual_server]]
name = "echo"
listen = "127.0.0.1:0"
pool = "echo"

[[virtual_server]]
name = "web"
listen = "127.0.0.1:0"
mode = "http"
pool = "web"
`, echo.Addr(), web.Listener.Addr().String())
	srv := newProxy(t, toml)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv
}

// scrape fetches the handler's output and parses it.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// value returns the value of the series of family name with labels (pairs
// name, value), and whether it is there.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	if !ok {
		t.Fatalf("%s%v: no such series", name, labels)
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestMetricsMatchTheTraffic(t *testing.T) {
	srv := startServer(t)
	at := time.Unix(1700000000, 0)
	h := MetricsHandler(srv, func() (bool, time.Time) { return true, at })

	// Three tcp connections: two closed, one left open.
	echoAddr := srv.ListenAddr("echo").String()
	for range 2 {
		c, err := net.Dial("tcp", echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
		_ = c.Close()
	}
	open, err := net.Dial("tcp", echoAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	roundTrip(t, open)

	// Five http requests on one keepalive client conn.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + srv.ListenAddr("web").String() + "/"
	for range 5 {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}

	socktest.WaitFor(t, 5*time.Second, "the closed tcp conns to end", func() bool {
		return srv.VirtualServer("echo").Stats().Active == 1
	})
	// A request is counted once its response is sent, so after the client
	// may have read it.
	socktest.WaitFor(t, 5*time.Second, "the last request to be counted", func() bool {
		return srv.VirtualServer("web").RequestStats().Count == 5
	})
	fams := scrape(t, h)
	mustValue(t, fams, 3, "tether_connections_total", "virtual_server", "echo", "side", "client")
	mustValue(t, fams, 1, "tether_connections_active", "virtual_server", "echo", "side", "client")
	mustValue(t, fams, 3, "tether_connections_total", "virtual_server", "echo", "side", "server")
	mustValue(t, fams, 1, "tether_connections_active", "virtual_server", "echo", "side", "server")
	mustValue(t, fams, 1, "tether_connections_total", "virtual_server", "web", "side", "client")
	mustValue(t, fams, 1, "tether_connections_total", "virtual_server", "web", "side", "server")
	mustValue(t, fams, 5, "tether_requests_total", "virtual_server", "web", "code", "2xx")
	mustValue(t, fams, 0, "tether_requests_total", "virtual_server", "web", "code", "5xx")
	mustValue(t, fams, 5, "tether_request_duration_seconds", "virtual_server", "web")
	mustValue(t, fams, 1, "tether_member_up", "pool", "web")
	mustValue(t, fams, 1, "tether_member_state", "pool", "echo", "state", "up")
	mustValue(t, fams, 0, "tether_member_state", "pool", "echo", "state", "disabled")
	mustValue(t, fams, 4, "tether_pool_reused_total", "pool", "web")
	mustValue(t, fams, 1, "tether_pool_connections_opened_total", "pool", "web")
	mustValue(t, fams, 3, "tether_pool_connections_opened_total", "pool", "echo")
	mustValue(t, fams, 3, "tether_connect_duration_seconds", "pool", "echo")
	mustValue(t, fams, 1, "tether_connect_duration_seconds", "pool", "web")
	mustValue(t, fams, 1, "tether_pool_connections", "pool", "web", "state", "idle")
	mustValue(t, fams, 0, "tether_pool_connections", "pool", "web", "state", "active")
	mustValue(t, fams, 1, "tether_pool_connections", "pool", "echo", "state", "active")
	mustValue(t, fams, 1, "tether_config_last_reload_successful")
	mustValue(t, fams, float64(at.Unix()), "tether_config_last_reload_success_timestamp_seconds")
	mustValue(t, fams, 0, "tether_scrape_errors_total", "family", "tcp_sockets")
	for _, side := range []string{"client", "server"} {
		if n, _ := value(fams, "tether_tcp_sockets", "virtual_server", "echo", "side", side, "state", "ESTABLISHED"); n < 1 {
			t.Errorf("tether_tcp_sockets{echo,%s,ESTABLISHED} = %v, want at least the open conn", side, n)
		}
	}
	mustValue(t, fams, 1, "tether_tcp_sockets", "virtual_server", "echo", "side", "client", "state", "LISTEN")
	if n := len(fams["tether_tcp_sockets"].GetMetric()); n != 2*2*11 {
		t.Errorf("tether_tcp_sockets has %d series, want 2 virtual servers x 2 sides x 11 states", n)
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}

func TestDisabledMemberShowsInMetrics(t *testing.T) {
	srv := startServer(t)
	h := MetricsHandler(srv, nil)
	srv.Pool("echo").Members()[0].SetEnabled(false)
	fams := scrape(t, h)
	mustValue(t, fams, 0, "tether_member_up", "pool", "echo")
	mustValue(t, fams, 1, "tether_member_state", "pool", "echo", "state", "disabled")
	mustValue(t, fams, 0, "tether_member_state", "pool", "echo", "state", "up")
	mustValue(t, fams, 1, "tether_member_up", "pool", "web")
	if fams["tether_config_last_reload_successful"] != nil {
		t.Error("reload metrics exported without a reload status")
	}
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
}
