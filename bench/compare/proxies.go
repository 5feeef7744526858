package main

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// kind is a proxy program, or none.
type kind string

const (
	direct  kind = "direct" // no proxy: the load goes to the backend itself
	haproxy kind = "haproxy"
	nginx   kind = "nginx"
	tether  kind = "tether"
)

// target is one column of a table: a proxy (or direct) and, for tether,
// the binary under test.
type target struct {
	name string // the column: direct, haproxy, nginx, tether, tether-b
	kind kind
	bin  string // tether's binary
}

// pair is one front port of the proxy and the backend port it forwards to.
type pair struct{ Front, Back int }

func fronts(ps []pair) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.Front
	}
	return out
}

// tlsFiles is the one certificate every TLS-terminating proxy serves.
type tlsFiles struct {
	Cert, Key string
	Combined  string // cert then key, for HAProxy's crt
}

// proxyConfig is what a config template needs. Mode is tcp, http or https.
type proxyConfig struct {
	Mode  string
	Pairs []pair
	TLS   *tlsFiles

	Threads int // HAProxy nbthread, nginx worker_processes (tether: GOMAXPROCS); the nginx backend: 0 = 1 worker
	// Unpinned runs the proxy on every CPU (no taskset) and tether with
	// its default GOMAXPROCS (the allcores scenario); not in a template.
	Unpinned bool
	MaxConn  int // HAProxy maxconn
	Splice   bool
	// DeferAccept: http and https listeners take a conn only once its
	// first bytes came (-defer-accept), on every proxy alike.
	DeferAccept bool

	Dir            string // nginx's prefix: pid, logs, temp paths
	WorkerConns    int
	NoFile         int
	NginxKeepalive int
	StreamModule   string

	LogLevel string // tether
	PoolMax  int    // tether: member max_connections and pool max_idle
	MinIdle  int    // tether: warm pool

	BackendPorts []int // nginx backend
	StubPort     int
	Body         string

	// CPUs, when set, is the taskset CPU list tether runs on, with
	// GOMAXPROCS=Threads (the scaling scenario); not in a template.
	CPUs string
}

// body64 is the backend's answer, exactly 64 bytes.
const body64 = "tether-bench-64-byte-body-0123456789-abcdefghijklmnopqrstuvwxyz."

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.tmpl"))

// render fills the named template (haproxy.cfg.tmpl, nginx-proxy.conf.tmpl,
// nginx-backend.conf.tmpl, tether.toml.tmpl).
func render(name string, cfg proxyConfig) (string, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, cfg); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return b.String(), nil
}

// running is a started proxy (nil proc for direct).
type running struct {
	t    target
	proc *proc
	pids []int // whose CPU and memory count: the process, plus nginx's workers
}

func (r *running) alive() bool { return r.proc == nil || r.proc.alive() }

// checkConfig validates a rendered config with the program itself.
func checkConfig(k kind, bin, path string) error {
	var cmd *exec.Cmd
	switch k {
	case haproxy:
		cmd = exec.Command("haproxy", "-c", "-q", "-f", path)
	case nginx:
		dir := filepath.Dir(path)
		cmd = exec.Command("nginx", "-t", "-q", "-p", dir, "-c", path)
	case tether:
		cmd = exec.Command(bin, "check", "-c", path)
	default:
		return nil
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s rejects %s: %v: %s", k, path, err, firstBytes(out))
	}
	return nil
}

// writeConfig renders t's config for cfg into the temp dir under tag and
// checks it; it returns the file's path.
func (e *env) writeConfig(t target, tag string, cfg proxyConfig) (string, error) {
	var tmpl, path string
	switch t.kind {
	case haproxy:
		tmpl, path = "haproxy.cfg.tmpl", filepath.Join(e.tmp, tag+".cfg")
	case nginx:
		cfg.Dir = filepath.Join(e.tmp, tag)
		if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
			return "", err
		}
		tmpl, path = "nginx-proxy.conf.tmpl", filepath.Join(cfg.Dir, "nginx.conf")
	case tether:
		tmpl, path = "tether.toml.tmpl", filepath.Join(e.tmp, tag+".toml")
	default:
		return "", nil
	}
	text, err := render(tmpl, cfg)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return "", err
	}
	return path, checkConfig(t.kind, t.bin, path)
}

// proxyConfigFor fills the settings every proxy of this run shares.
func (e *env) proxyConfigFor(mode string, pairs ...pair) proxyConfig {
	return proxyConfig{
		Mode: mode, Pairs: pairs, TLS: e.tls,
		Threads: 1, MaxConn: e.haMaxConn, Splice: e.o.splice, DeferAccept: e.o.deferAccept && mode != "tcp",
		WorkerConns: e.nginxWorkerConns, NoFile: e.fdLimit, NginxKeepalive: nginxKeepalive,
		StreamModule: e.streamModule,
		LogLevel:     "warn", PoolMax: tetherPoolMax,
	}
}

// startProxy starts t with cfg alone on the proxy CPU (tether with
// GOMAXPROCS=1) and waits until every front port listens. direct starts
// nothing.
func (e *env) startProxy(ctx context.Context, t target, tag string, cfg proxyConfig) (*running, error) {
	if t.kind == direct {
		return &running{t: t}, nil
	}
	path, err := e.writeConfig(t, tag, cfg)
	if err != nil {
		return nil, err
	}
	pin := []string{"taskset", "-c", strconv.Itoa(e.o.proxyCPU)}
	procsEnv := "GOMAXPROCS=" + strconv.Itoa(max(1, cfg.Threads))
	if cfg.CPUs != "" {
		pin = []string{"taskset", "-c", cfg.CPUs}
	}
	if cfg.Unpinned {
		// An empty GOMAXPROCS is the runtime's default (every CPU), even
		// when this program's environment sets one.
		pin, procsEnv = nil, "GOMAXPROCS="
	}
	var p *proc
	switch t.kind {
	case haproxy:
		p, err = e.ps.start(tag, nil, append(pin, "haproxy", "-db", "-f", path)...)
	case nginx:
		p, err = e.ps.start(tag, nil, append(pin, "nginx", "-p", filepath.Dir(path), "-c", path, "-g", "daemon off;")...)
	case tether:
		p, err = e.ps.start(tag, []string{procsEnv}, append(pin, t.bin, "run", "-c", path)...)
	}
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, p, 15*time.Second, fronts(cfg.Pairs)...); err != nil {
		e.ps.stop(p)
		return nil, fmt.Errorf("%s did not start: %w", t.name, err)
	}
	r := &running{t: t, proc: p, pids: []int{p.pid()}}
	if t.kind == nginx {
		r.pids = append(r.pids, children(p.pid())...)
		if len(r.pids) < 2 {
			e.warnf("no nginx worker under %d: only the master's CPU counts", p.pid())
		}
	}
	_ = sleep(ctx, 300*time.Millisecond) // settle (health state, first GC) before measuring
	return r, nil
}

func (e *env) stopProxy(r *running) {
	if r != nil && r.proc != nil {
		e.ps.stop(r.proc)
	}
}

// backend is the nginx that serves every HTTP scenario's 64-byte answer,
// alone on its ports, with stub_status for the accepts count.
type backend struct {
	proc     *proc
	pids     []int
	stubPort int
}

// startBackend starts an nginx backend (1 worker) on the load CPU
// listening on ports.
func (e *env) startBackend(ctx context.Context, tag string, ports []int) (*backend, error) {
	return e.startBackendOn(ctx, tag, ports, true, 1)
}

// startBackendOn starts an nginx backend with workers worker processes,
// on the load CPU when pinned, else on every CPU.
func (e *env) startBackendOn(ctx context.Context, tag string, ports []int, pinned bool, workers int) (*backend, error) {
	stub := e.ports.pick()
	dir := filepath.Join(e.tmp, tag)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	cfg := proxyConfig{Dir: dir, WorkerConns: e.nginxWorkerConns, BackendPorts: ports, StubPort: stub, Body: body64, Threads: workers}
	text, err := render("nginx-backend.conf.tmpl", cfg)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return nil, err
	}
	if err := checkConfig(nginx, "", path); err != nil {
		return nil, err
	}
	argv := []string{"nginx", "-p", dir, "-c", path, "-g", "daemon off;"}
	if pinned {
		argv = append([]string{"taskset", "-c", strconv.Itoa(e.o.loadCPU)}, argv...)
	}
	p, err := e.ps.start(tag, nil, argv...)
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, p, 15*time.Second, append(ports, stub)...); err != nil {
		e.ps.stop(p)
		return nil, fmt.Errorf("nginx backend: %w", err)
	}
	return &backend{proc: p, pids: children(p.pid()), stubPort: stub}, nil
}

// accepts reads the backend's stub_status accepts count; the reading's own
// connection is included, which accepted() takes out.
func (b *backend) accepts() (int64, error) {
	out, err := httpGet("127.0.0.1:" + strconv.Itoa(b.stubPort))
	if err != nil {
		return 0, err
	}
	return parseStubStatus(out)
}

// pin moves the backend (master and workers, every thread) to cpu.
func (b *backend) pin(cpu int) error {
	for _, pid := range append([]int{b.proc.pid()}, b.pids...) {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset -p %d: %v: %s", pid, err, out)
		}
	}
	return nil
}
