package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"

	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
)

// Options are what New needs.
type Options struct {
	// Listen is the admin API's host:port (port 0: a free port, see Addr).
	Listen string
	// Token, when not "", is the bearer token every request must carry.
	// It is required when Listen is not a loopback address.
	Token string
	// ConfigPath is the config file the server runs; /api/v1/status shows
	// it and the sha256 of its content as read by New.
	ConfigPath string
	// Version is shown by /api/v1/status.
	Version string
	// Server is the running proxy.
	Server *proxy.Server
	// Metrics, when not nil, is served at /metrics.
	Metrics http.Handler
	// Reloader, when not nil, serves POST /api/v1/reload and is the source
	// of /api/v1/status's config hash and last reload.
	Reloader *Reloader
	// Logger; nil = no logs.
	Logger *zap.Logger
	// Listener, when not nil, gives Start its listener for Listen (one
	// received from the process tether replaced, or from systemd); nil =
	// Start binds Listen itself.
	Listener func(ctx context.Context, addr string) (net.Listener, error)
	// Upgrade, when not nil, serves POST /api/v1/upgrade (upgrade.go).
	Upgrade UpgradeFunc
}

// Admin is the admin API server. Build with New, then Start and Shutdown.
type Admin struct {
	opts    Options
	log     *zap.Logger
	started time.Time
	cfgHash string // sha256 of the config file, hex; "" if unread
	load    Result // the start's, without a Reloader

	mux  *http.ServeMux
	http *http.Server

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{} // closed when Serve returned
}

// ErrNoToken is returned by New for a non-loopback listen address without
// a token.
var ErrNoToken = errors.New("admin: a listen address that is not loopback needs a token")

// New builds the admin server; nothing is bound before Start.
func New(o Options) (*Admin, error) {
	if o.Server == nil {
		return nil, errors.New("admin: no server")
	}
	if o.Token == "" && !config.LoopbackListen(o.Listen) {
		return nil, fmt.Errorf("%w: %q", ErrNoToken, o.Listen)
	}
	a := &Admin{opts: o, log: o.Logger, started: time.Now()}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	a.load = Result{At: a.started, OK: true, Changes: []string{}, Problems: []string{}}
	if o.ConfigPath != "" {
		if b, err := os.ReadFile(o.ConfigPath); err == nil {
			sum := sha256.Sum256(b)
			a.cfgHash = hex.EncodeToString(sum[:])
		}
	}
	a.mux = a.routes()
	a.http = &http.Server{
		Handler:           a.guard(a.mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(a.log),
	}
	return a, nil
}

// Start binds the listener and serves in the background until Shutdown.
func (a *Admin) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln != nil {
		return errors.New("admin: already started")
	}
	var (
		ln  net.Listener
		err error
	)
	if a.opts.Listener != nil {
		ln, err = a.opts.Listener(ctx, a.opts.Listen)
	} else {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp", a.opts.Listen)
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	a.ln, a.done = ln, make(chan struct{})
	go a.serve(ln, a.done)
	a.log.Info("admin API listening", zap.Stringer("addr", ln.Addr()), zap.Bool("token", a.opts.Token != ""))
	return nil
}

func (a *Admin) serve(ln net.Listener, done chan struct{}) {
	defer close(done)
	if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("admin API stopped", zap.Error(err))
	}
}

// Addr returns the bound address, or nil before Start.
func (a *Admin) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Shutdown stops accepting, lets requests in progress finish until ctx is
// done, then closes the rest; it returns once the serving goroutine ended.
func (a *Admin) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	if done == nil {
		return nil
	}
	err := a.http.Shutdown(ctx)
	if err != nil {
		_ = a.http.Close()
	}
	<-done
	return err
}

// guard applies the access rules before any handler: the bearer token when
// there is one (except for the dashboard's page and assets, which hold no
// data: see dashboard.go, and the probes), then X-Tether on POST.
func (a *Admin) guard(next http.Handler) http.Handler {
	want := []byte("Bearer " + a.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Token != "" && !dashboardShell(r) && !probe(r) {
			got := []byte(r.Header.Get("Authorization"))
			if subtle.ConstantTimeCompare(got, want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tether"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get("X-Tether") != "1" {
			writeError(w, http.StatusForbidden, `a change needs the header "X-Tether: 1"`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// probe reports whether r is a liveness or readiness probe (GET or HEAD of
// /healthz or /ready), which the guard serves without the token: a
// kubelet's probe cannot read a Secret (its headers are plain text in the
// pod spec), and the answers say only "alive" or "ready" (as the
// Kubernetes API server serves its own /livez and /readyz to anyone).
func probe(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/healthz" || r.URL.Path == "/ready")
}
