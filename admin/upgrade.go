package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"
)

// UpgradeFunc starts the new process of a hot binary upgrade and returns
// once it is ready (its PID; the caller's process then drains and exits)
// or failed: err says why, problems are the new process's own words (its
// configuration's problems, one per line) when it gave them. An err that
// wraps ErrUpgradeRefused means no new process was started (one upgrade
// is already under way, the process before this one is still draining
// ...).
type UpgradeFunc func(ctx context.Context) (pid int, problems []string, err error)

// ErrUpgradeRefused marks an upgrade that was not tried: POST
// /api/v1/upgrade answers 409.
var ErrUpgradeRefused = errors.New("upgrade refused")

// upgradeAnswerWithin bounds the wait for an upgrade's answer (the
// UpgradeFunc bounds the upgrade itself).
const upgradeAnswerWithin = 2 * time.Minute

// upgradeAnswer is POST /api/v1/upgrade's body on success.
type upgradeAnswer struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	OldPID int       `json:"old_pid"`
	NewPID int       `json:"new_pid"` // 0: not known
}

// upgrade is POST /api/v1/upgrade: it answers when the new process is
// ready (200; this process then stops accepting and drains) or failed (500
// with why, and the new process's problems; this process keeps serving),
// or 409 when no upgrade was tried.
func (a *Admin) upgrade(w http.ResponseWriter, r *http.Request) {
	if a.opts.Upgrade == nil {
		writeError(w, http.StatusNotFound, "hot upgrade is not available in this process")
		return
	}
	// Not cut short by a client that goes away: an upgrade runs to its
	// end, which may come after the server's WriteTimeout.
	ctx := context.WithoutCancel(r.Context())
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(upgradeAnswerWithin))
	pid, problems, err := a.opts.Upgrade(ctx)
	switch {
	case errors.Is(err, ErrUpgradeRefused):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error(), problems...)
	default:
		writeJSON(w, http.StatusOK, upgradeAnswer{OK: true, At: time.Now(), OldPID: os.Getpid(), NewPID: pid})
	}
}
