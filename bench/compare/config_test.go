package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// testConfig is what the program renders for mode, with two front/back
// pairs and a real certificate.
func testConfig(t *testing.T, mode string) proxyConfig {
	t.Helper()
	dir := t.TempDir()
	tls, err := makeCert(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return proxyConfig{
		Mode: mode, Pairs: []pair{{21001, 21002}, {21003, 21004}}, TLS: tls,
		Threads: 1, MaxConn: 1000, Dir: dir, WorkerConns: 1024, NoFile: 4096, NginxKeepalive: nginxKeepalive,
		StreamModule: "/usr/lib/nginx/modules/ngx_stream_module.so",
		LogLevel:     "warn", PoolMax: tetherPoolMax, MinIdle: 8,
		BackendPorts: []int{21005, 21006}, StubPort: 21007, Body: body64,
	}
}

func renderTo(t *testing.T, tmpl, path string, cfg proxyConfig) string {
	t.Helper()
	text, err := render(tmpl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return text
}

func mustContain(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("rendered config lacks %q:\n%s", w, text)
		}
	}
}

func TestHAProxyConfigsPassHAProxyCheck(t *testing.T) {
	bin := socktest.Need(t, "haproxy", "haproxy")
	for _, mode := range []string{"tcp", "http", "https"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, mode)
			path := filepath.Join(cfg.Dir, "haproxy.cfg")
			text := renderTo(t, "haproxy.cfg.tmpl", path, cfg)
			if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
				t.Fatalf("haproxy -c: %v: %s\n%s", err, out, text)
			}
			mustContain(t, text, "nbthread 1", "bind 127.0.0.1:21001", "server s1 127.0.0.1:21004")
			if mode != "tcp" {
				// its best pooling: idle server conns shared across client conns
				mustContain(t, text, "http-reuse always")
			}
			if mode == "https" {
				mustContain(t, text, "ssl crt "+cfg.TLS.Combined, "ssl-min-ver TLSv1.3", "X25519")
			}
			if strings.Contains(text, "\n    log ") {
				t.Error("HAProxy logs")
			}
		})
	}
}

func TestNginxConfigsPassNginxTest(t *testing.T) {
	bin := socktest.Need(t, "nginx", "nginx")
	for _, mode := range []string{"backend", "tcp", "http", "https"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, mode)
			if mode == "tcp" {
				if _, err := os.Stat(cfg.StreamModule); err != nil {
					if os.Getenv("CI") != "" {
						t.Fatalf("nginx's stream module is not installed; CI must install it (.ci/run: libnginx-mod-stream)")
					}
					t.Skip("nginx's stream module not installed (apt-get install libnginx-mod-stream)")
				}
			}
			tmpl := "nginx-proxy.conf.tmpl"
			if mode == "backend" {
				tmpl = "nginx-backend.conf.tmpl"
			}
			path := filepath.Join(cfg.Dir, "nginx.conf")
			text := renderTo(t, tmpl, path, cfg)
			if out, err := exec.Command(bin, "-t", "-q", "-p", cfg.Dir, "-c", path).CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v: %s\n%s", err, out, text)
			}
			switch mode {
			case "backend":
				mustContain(t, text, "listen 127.0.0.1:21005", "listen 127.0.0.1:21006", `return 200 "`+body64+`"`, "stub_status", "access_log off", "keepalive_requests 100000")
			case "tcp":
				mustContain(t, text, "stream {", "proxy_pass 127.0.0.1:21002;")
			default:
				// its best pooling: upstream keepalive over HTTP/1.1 with no Connection header
				mustContain(t, text, "keepalive 64;", "keepalive_requests 1000000;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`, "access_log off", "worker_processes 1;")
			}
			if mode == "https" {
				mustContain(t, text, "ssl_certificate "+cfg.TLS.Cert, "ssl_protocols TLSv1.3;")
			}
		})
	}
}

func TestTetherConfigsLoad(t *testing.T) {
	for _, mode := range []string{"tcp", "http", "https"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, mode)
			path := filepath.Join(cfg.Dir, "tether.toml")
			text := renderTo(t, "tether.toml.tmpl", path, cfg)
			c, err := config.LoadFile(path)
			if err != nil {
				t.Fatalf("config.LoadFile: %v\n%s", err, text)
			}
			if len(c.VirtualServers) != 2 {
				t.Fatalf("%d virtual servers, want 2", len(c.VirtualServers))
			}
			mustContain(t, text, "access = false")
			if mode != "tcp" {
				mustContain(t, text, `reuse = "shared"`, "max_idle = 64", "min_idle = 8", "max_requests = 0", "forwarded_headers = false")
			}
		})
	}
}

// -defer-accept: every proxy's http and https listeners take a conn only
// once its first bytes came, each in its own words, and each program
// accepts its config.
func TestDeferAcceptConfigs(t *testing.T) {
	haproxy := socktest.Need(t, "haproxy", "haproxy")
	nginx := socktest.Need(t, "nginx", "nginx")
	for _, mode := range []string{"http", "https"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, mode)
			cfg.DeferAccept = true

			path := filepath.Join(cfg.Dir, "haproxy.cfg")
			text := renderTo(t, "haproxy.cfg.tmpl", path, cfg)
			if out, err := exec.Command(haproxy, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
				t.Fatalf("haproxy -c: %v: %s\n%s", err, out, text)
			}
			mustContain(t, text, " defer-accept")

			path = filepath.Join(cfg.Dir, "nginx.conf")
			text = renderTo(t, "nginx-proxy.conf.tmpl", path, cfg)
			if out, err := exec.Command(nginx, "-t", "-q", "-p", cfg.Dir, "-c", path).CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v: %s\n%s", err, out, text)
			}
			mustContain(t, text, " deferred backlog=4096;")

			path = filepath.Join(cfg.Dir, "tether.toml")
			text = renderTo(t, "tether.toml.tmpl", path, cfg)
			c, err := config.LoadFile(path)
			if err != nil {
				t.Fatalf("config.LoadFile: %v\n%s", err, text)
			}
			for _, vs := range c.VirtualServers {
				if got := c.Client(vs).DeferAccept; got != time.Second {
					t.Errorf("%s: client profile defer_accept %v, want 1s", vs.Name, got)
				}
			}
		})
	}
}
