package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
)

// Reloader reads the config file again and puts it in force on the running
// proxy (SIGHUP and POST /api/v1/reload run it), and remembers the result
// for /api/v1/status and the reload metrics. A file that fails validation,
// or a config the proxy cannot put in force (a listener that cannot bind
// ...), changes nothing: the old config keeps running and every problem is
// logged and returned. Its methods are safe for concurrent use; reloads
// run one at a time.
type Reloader struct {
	path string
	srv  *proxy.Server
	log  *zap.Logger

	mu      sync.Mutex
	running *config.Config // the config in force: the last good one
	hash    string         // sha256 of the file as last read into force
	last    Result
	lastOK  time.Time
}

// Result is one config load: the one tether started with, or a reload.
type Result struct {
	At       time.Time `json:"at"`
	OK       bool      `json:"ok"`
	Changes  []string  `json:"changes"`
	Problems []string  `json:"problems"`
}

// NewReloader returns the Reloader of srv, which runs cfg, read from path.
// logger may be nil.
func NewReloader(path string, cfg *config.Config, srv *proxy.Server, logger *zap.Logger) *Reloader {
	if logger == nil {
		logger = zap.NewNop()
	}
	now := time.Now()
	r := &Reloader{path: path, srv: srv, log: logger, running: cfg,
		last: Result{At: now, OK: true, Changes: []string{}, Problems: []string{}}, lastOK: now}
	if b, err := os.ReadFile(path); err == nil {
		r.hash = hashOf(b)
	}
	return r
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Reload reads and validates the whole file and puts it in force. The
// certificate files are read again too, even when the tls tables did not
// change. Settings read only at start ([admin], [log]) are reported as
// needing a restart.
func (r *Reloader) Reload(ctx context.Context) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{At: time.Now(), Changes: []string{}, Problems: []string{}}
	b, readErr := os.ReadFile(r.path)
	cfg, err := config.LoadFile(r.path)
	if err == nil && readErr != nil {
		err = readErr
	}
	var changes []string
	if err == nil {
		changes, err = r.srv.Reload(ctx, cfg)
	}
	if err != nil {
		res.Problems = problems(err)
		r.last = res
		r.log.Error("config reload failed; the running config is unchanged",
			zap.String("config", r.path), zap.Strings("problems", res.Problems))
		return res
	}
	if err := r.srv.ReloadCertificates(); err != nil {
		changes = append(changes, "certificates: "+err.Error()+" (the old certificates stay in service)")
	}
	changes = append(changes, restartOnly(r.running, cfg)...)
	res.OK, res.Changes = true, append(res.Changes, changes...)
	r.running, r.hash, r.last, r.lastOK = cfg, hashOf(b), res, res.At
	for _, w := range cfg.Warnings {
		r.log.Warn("config", zap.String("warning", w))
	}
	r.log.Info("config reloaded", zap.String("config", r.path), zap.Strings("changes", res.Changes))
	return res
}

// problems lists err's problems one per line: a config.Error's each, with
// its file and line, or err itself.
func problems(err error) []string {
	var ce *config.Error
	if errors.As(err, &ce) {
		out := make([]string, len(ce.Problems))
		for i, p := range ce.Problems {
			one := *ce
			one.Problems = []config.Problem{p}
			out[i] = one.Error()
		}
		return out
	}
	return []string{err.Error()}
}

// restartOnly names the changed settings that a reload does not apply.
func restartOnly(old, cfg *config.Config) []string {
	var out []string
	if !reflect.DeepEqual(old.Admin, cfg.Admin) {
		out = append(out, "[admin] changed: it applies after a restart")
	}
	if !reflect.DeepEqual(old.Log, cfg.Log) {
		out = append(out, "[log] changed: it applies after a restart")
	}
	return out
}

// Last returns the last load's result.
func (r *Reloader) Last() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Status is the ReloadStatus of the metrics: whether the last reload
// succeeded, and when the last one that did ran (start counts as one).
func (r *Reloader) Status() (ok bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.OK, r.lastOK
}

// ConfigSHA256 is the sha256 of the config file in force, as it was read.
func (r *Reloader) ConfigSHA256() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hash
}

// reload is POST /api/v1/reload: 200 with what changed, or 400 with every
// problem (the running config is unchanged).
func (a *Admin) reload(w http.ResponseWriter, r *http.Request) {
	if a.opts.Reloader == nil {
		writeError(w, http.StatusNotFound, "reload is not available: tether was not started from a config file")
		return
	}
	// Not cut short by a client that goes away: a reload runs to its end.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	res := a.opts.Reloader.Reload(ctx)
	if !res.OK {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reload failed: the running config is unchanged (%d problems)", len(res.Problems)), res.Problems...)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
