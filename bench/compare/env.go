package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Settings every proxy shares (the former bench/compare.sh's values).
const (
	tetherPoolMax = 64 // tether member max_connections and pool max_idle
	// nginxKeepalive is nginx's upstream keepalive: the idle upstream conns
	// a worker caches. Below the load's concurrency (wrk -c 50) nginx
	// closes the surplus conns after each burst and opens new ones (14,191
	// in one 5 s run with 32): not its best. The same 64 as tether's pool.
	nginxKeepalive = tetherPoolMax
	haMaxConn      = 30000
)

// env is one run: its options, temp dir, processes, ports and binaries.
type env struct {
	o     *options
	root  string // the module's root directory
	tmp   string
	ps    *procs
	ports *ports

	tethers    []target // -tether, and -tether-b when given
	loadTether string   // the tether whose bench command is a load generator
	idleconns  string
	tls        *tlsFiles

	fdLimit          int
	haMaxConn        int
	nginxWorkerConns int
	streamModule     string            // nginx's stream module, for tcp mode ("" = none)
	builds           map[string]string // build tags → tether built from the working tree
	warnings         []string
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (e *env) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.warnings = append(e.warnings, msg)
	e.logf("WARNING: %s", msg)
}

// prepare raises the fd limit, builds what it must and makes the
// certificate.
func (e *env) prepare(ctx context.Context) error {
	if runtime.NumCPU() < 2 || e.o.proxyCPU == e.o.loadCPU {
		e.warnf("the proxy and the load share CPU %d: figures will be pessimistic", e.o.loadCPU)
	}
	e.raiseFDLimit()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(gomod)), "go.mod") {
		return fmt.Errorf("run from inside the tether module (go env GOMOD: %q, %v)", strings.TrimSpace(string(gomod)), err)
	}
	e.root = filepath.Dir(strings.TrimSpace(string(gomod)))
	if !filepath.IsAbs(e.o.outDir) {
		e.o.outDir = filepath.Join(e.root, e.o.outDir)
	}
	// tether's binaries.
	build := func() (string, error) { return e.buildTether(ctx, "") }
	a := e.o.tetherA
	if a == "" {
		var err error
		if a, err = build(); err != nil {
			return err
		}
	}
	e.tethers = []target{{name: e.o.labelA, kind: tether, bin: a}}
	if e.o.tetherB != "" {
		e.tethers = append(e.tethers, target{name: e.o.labelB, kind: tether, bin: e.o.tetherB})
	}
	for _, t := range e.tethers {
		if _, err := os.Stat(t.bin); err != nil {
			return fmt.Errorf("%s binary: %w", t.name, err)
		}
	}
	e.loadTether = e.o.loadTether
	if e.loadTether == "" {
		var err error
		if e.loadTether, err = build(); err != nil {
			return err
		}
	}
	e.idleconns = filepath.Join(e.tmp, "idleconns")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", e.idleconns, "./bench/idleconns")
	cmd.Dir = e.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./bench/idleconns: %v: %s", err, firstBytes(b))
	}
	if e.tls, err = makeCert(filepath.Join(e.tmp, "tls")); err != nil {
		return err
	}
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so"} {
		if _, err := os.Stat(p); err == nil {
			e.streamModule = p
			break
		}
	}
	return nil
}

// buildTether builds ./cmd/tether with the given build tags into the temp
// dir, once per tags.
func (e *env) buildTether(ctx context.Context, tags string) (string, error) {
	if p, ok := e.builds[tags]; ok {
		return p, nil
	}
	out := filepath.Join(e.tmp, "tether")
	args := []string{"build", "-o", out}
	if tags != "" {
		out += "-" + tags
		args = []string{"build", "-tags", tags, "-o", out}
	}
	e.logf("building ./cmd/tether %s", tags)
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/tether")...)
	cmd.Dir = e.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tether %s: %v: %s", tags, err, firstBytes(b))
	}
	if e.builds == nil {
		e.builds = map[string]string{}
	}
	e.builds[tags] = out
	return out, nil
}

// raiseFDLimit raises RLIMIT_NOFILE as far as allowed (the proxies inherit
// it), then fits HAProxy's maxconn and the idle conn counts into it:
// HAProxy wants ~2 fds per maxconn; an idle proxied conn holds 2 fds of the
// proxy: the first batch must fit whole, the second gets what is left
// (secondBatch).
func (e *env) raiseFDLimit() {
	want := uint64(max(e.o.idleConns, e.o.idleKAConns)*4 + 2*haMaxConn + 1024)
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if lim.Max < want {
		try := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			lim = try
		}
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	e.fdLimit = int(min(lim.Cur, 1<<20))
	e.haMaxConn = haMaxConn
	if fit := (e.fdLimit - 200) / 2; fit < e.haMaxConn {
		e.haMaxConn = fit
		e.warnf("fd limit %d (raising it needs CAP_SYS_RESOURCE): HAProxy maxconn lowered to %d", e.fdLimit, fit)
	}
	// The first batch (issue 13's figure) must fit whole: 2 fds per conn
	// in a tcp proxy; secondBatch sizes the marginal batch to what is left.
	fit := func(n *int, what string) {
		if *n*2+1024 > e.fdLimit {
			v := (e.fdLimit - 1024) / 2 / 50 * 50
			e.warnf("fd limit %d: %s lowered from %d to %d", e.fdLimit, what, *n, v)
			*n = v
		}
	}
	fit(&e.o.idleConns, "idle tcp conns")
	fit(&e.o.idleKAConns, "idle keepalive conns")
	e.nginxWorkerConns = max(8192, max(e.o.idleKAConns, e.o.idleConns)*4+512)
}

// secondBatch is the size of the marginal batch opened on top of a first
// batch of n idle conns, each holding fdsPerConn of the proxy's fds: n, or
// what the fd limit and HAProxy's maxconn leave (0: no second batch).
func (e *env) secondBatch(n, fdsPerConn int) int {
	room := min((e.fdLimit-1024)/fdsPerConn, e.haMaxConn-100) - n
	n2 := min(n, room/50*50)
	if n2 < 100 {
		return 0
	}
	return n2
}

// makeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1
// (its own CA for the clients): cert.pem, key.pem and combined.pem.
func makeCert(dir string) (*tlsFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	f := &tlsFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Combined: filepath.Join(dir, "combined.pem")}
	for path, b := range map[string][]byte{f.Cert: certPEM, f.Key: keyPEM, f.Combined: append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(path, b, 0o644); err != nil { // nginx workers (nobody) read them
			return nil, err
		}
	}
	return f, nil
}

// eachRound runs fn for every round and target, alternating the order of
// the targets between rounds (listed order, then reversed), so that no
// target always runs first or last on a machine that drifts.
func (e *env) eachRound(ctx context.Context, targets []target, fn func(round int, t target) error) {
	for r := 1; r <= e.o.rounds; r++ {
		order := slices.Clone(targets)
		if r%2 == 0 {
			slices.Reverse(order)
		}
		for _, t := range order {
			if ctx.Err() != nil {
				return
			}
			if err := fn(r, t); err != nil {
				e.warnf("%s (round %d): %v", t.name, r, err)
			}
		}
	}
}

// peers returns direct (when withDirect), HAProxy, nginx and the tethers.
func (e *env) peers(withDirect, withNginx bool) []target {
	var ts []target
	if withDirect {
		ts = append(ts, target{name: "direct", kind: direct})
	}
	ts = append(ts, target{name: "haproxy", kind: haproxy})
	if withNginx {
		ts = append(ts, target{name: "nginx", kind: nginx})
	}
	return append(ts, e.tethers...)
}

func names(ts []target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

// peerRatios: tether over each peer present, over the better of HAProxy
// and nginx when both are, and B over A.
func (e *env) peerRatios(ts []target) []ratio {
	a := e.tethers[0].name
	var rs []ratio
	peers := 0
	for _, t := range ts {
		if t.kind == haproxy || t.kind == nginx || t.kind == direct {
			rs = append(rs, ratio{Name: a + "/" + t.name, Num: a, Den: t.name})
		}
		if t.kind == haproxy || t.kind == nginx {
			peers++
		}
	}
	if peers == 2 {
		rs = append(rs, ratio{Name: a + "/" + betterPeerCol, Num: a, Den: betterPeerCol})
	}
	if len(e.tethers) > 1 {
		b := e.tethers[1].name
		rs = append(rs, ratio{Name: b + "/" + a, Num: b, Den: a})
	}
	return rs
}

// httpGet fetches http://addr/ on a fresh connection.
func httpGet(addr string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return string(b), err
}

// version returns the first line a program prints about its version.
func version(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// fileID identifies a binary: its sha256 prefix, size and time.
func fileID(path string) map[string]any {
	b, err := os.ReadFile(path)
	if err != nil {
		return map[string]any{"path": path, "error": err.Error()}
	}
	st, _ := os.Stat(path)
	sum := sha256.Sum256(b)
	return map[string]any{"path": path, "sha256": hex.EncodeToString(sum[:8]), "bytes": len(b), "modified": st.ModTime().Format(time.RFC3339)}
}

// writeResults writes the JSON document: the run's settings, versions and
// every section.
func (e *env) writeResults(sections []*section, wall time.Duration) (string, error) {
	if err := os.MkdirAll(e.o.outDir, 0o755); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	kernel := version("uname", "-r")
	tethers := map[string]any{}
	for _, t := range e.tethers {
		tethers[t.name] = fileID(t.bin)
	}
	commit := strings.TrimSpace(version("git", "-C", e.root, "rev-parse", "--short", "HEAD"))
	if st := version("git", "-C", e.root, "status", "--porcelain", "--", "cmd", "config", "pool", "proxy", "sockopt"); st != "" {
		commit += "+dirty"
	}
	doc := map[string]any{
		"date": time.Now().Format(time.RFC3339), "host": host, "kernel": kernel, "cpus": runtime.NumCPU(),
		"wall_seconds": wall.Seconds(), "working_tree": commit,
		"options": map[string]any{
			"quick": e.o.quick, "rounds": e.o.rounds, "duration_s": e.o.dur.Seconds(), "redis_n": e.o.redisN,
			"idle_conns": e.o.idleConns, "idle_ka_conns": e.o.idleKAConns, "idle_settle_s": e.o.idleSettle.Seconds(),
			"loadgen_n": e.o.loadgenN, "proxy_cpu": e.o.proxyCPU, "load_cpu": e.o.loadCPU, "haproxy_splice": e.o.splice,
			"fd_limit": e.fdLimit, "haproxy_maxconn": e.haMaxConn,
		},
		"tether":         tethers,
		"loadgen_tether": fileID(e.loadTether),
		"versions": map[string]string{
			"haproxy": version("haproxy", "-v"), "nginx": version("nginx", "-v"), "wrk": version("wrk", "--version"),
			"ab": version("ab", "-V"), "iperf3": version("iperf3", "--version"), "redis": version("redis-server", "--version"),
			"go": runtime.Version(),
		},
		"warnings": e.warnings,
		"sections": sections,
	}
	path := e.outPath()
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return path, writeJSON(f, doc)
}
