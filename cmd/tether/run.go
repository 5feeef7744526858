package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/admin"
	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
)

// cmdRun is `tether run`: parse the flags, load the config and start
// logging, build the server and the admin API, start them with the
// upgrader, serve until a signal, then drain. Each failing step has said
// why (stderr, log, the upgrade's start report) when it returns !ok.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// Started by an upgrade: how the start went goes to the process that
	// started this one too (upgrade.go).
	report := takeStartReport()
	// SIGHUP reloads the config file, SIGUSR2 upgrades (both would kill
	// the process by default). Registered first: a signal that comes
	// while the process starts waits for the loop (serve).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)

	file, pidFile, ok := parseRunFlags(args, stderr, report)
	if !ok {
		return exitUsage
	}
	cfg, logger, stopLogging, ok := loadConfigAndLogging(file, stderr, report)
	if !ok {
		return exitError
	}
	defer stopLogging()

	// The listeners come from the replaced process or systemd when they
	// passed them, and are kept for the next process.
	up := newUpgrader(pidFile, logger)
	defer up.stop()

	srv, rl, adm, ok := buildServerAndAdmin(ctx, cfg, file, up, logger, stderr, report)
	if !ok {
		return exitError
	}
	defer shutdownAdmin(adm) // after the proxy's drain, so that it can be watched
	if !startListening(ctx, srv, up, logger, stderr, report) {
		return exitError
	}
	logger.Info("started", zap.String("config", file), zap.String("version", versionString()), zap.Int("pid", os.Getpid()))
	stopWatching := watchParent(up)
	defer stopWatching()

	if serve(ctx, hup, usr2, rl, up) {
		// The new process serves, the admin API too (same socket).
		shutdownAdmin(adm)
		drainAfterUpgrade(srv, logger)
		logger.Info("stopped: the new process serves")
		return exitOK
	}
	up.stop() // the listeners' copies closed: closing them now refuses, as before upgrades
	drain(srv, logger)
	removePIDFile(pidFile)
	logger.Info("stopped")
	return exitOK
}

// parseRunFlags reads `tether run`'s flags: the config file (required)
// and the PID file ("" = none).
func parseRunFlags(args []string, stderr io.Writer, report startReport) (file, pidFile string, ok bool) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fileFlag := fs.String("c", "", "config `FILE`")
	pidFileFlag := fs.String("pid-file", "", "write the PID to `FILE` once serving; a hot upgrade's new process rewrites it (systemd's PIDFile=)")
	if err := fs.Parse(args); err != nil {
		report.failed("usage: " + err.Error())
		return "", "", false
	}
	if *fileFlag == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: tether run -c FILE [--pid-file FILE]")
		report.failed("usage: tether run -c FILE [--pid-file FILE]")
		return "", "", false
	}
	return *fileFlag, *pidFileFlag, true
}

// loadConfigAndLogging loads the config file and starts logging as its
// [log] says, then logs the config's warnings. stopLogging is for the
// caller to defer.
func loadConfigAndLogging(file string, stderr io.Writer, report startReport) (cfg *config.Config, logger *zap.Logger, stopLogging func(), ok bool) {
	cfg, err := config.LoadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "tether: invalid configuration:\n%v\n", err)
		report.failed("invalid configuration:\n" + err.Error())
		return nil, nil, nil, false
	}
	logger, stopLogging, err = startLogging(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tether: %v\n", err)
		report.failed(err.Error())
		return nil, nil, nil, false
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config", zap.String("warning", w))
	}
	return cfg, logger, stopLogging, true
}

// buildServerAndAdmin builds the proxy on up's listeners and starts the
// admin API (nil when the config has none) before any listener binds:
// /healthz answers while they bind, /ready once they are. Nothing is
// bound when it fails.
func buildServerAndAdmin(ctx context.Context, cfg *config.Config, file string, up *upgrader, logger *zap.Logger, stderr io.Writer, report startReport) (*proxy.Server, *admin.Reloader, *admin.Admin, bool) {
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		logger.Error("cannot build", zap.Error(err))
		report.failed(err.Error())
		return nil, nil, nil, false
	}
	srv.SetListeners(up)
	rl := admin.NewReloader(file, cfg, srv, logger)
	adm, err := startAdmin(ctx, cfg, file, srv, rl, up, logger)
	if err != nil {
		logger.Error("cannot start the admin API", zap.Error(err))
		fmt.Fprintf(stderr, "tether: %v\n", err)
		report.failed(err.Error())
		_ = srv.Shutdown(context.Background()) // nothing bound: frees the pools
		return nil, nil, nil, false
	}
	return srv, rl, adm, true
}

// shutdownAdmin stops the admin API, if any, waiting up to 5 s for its
// requests.
func shutdownAdmin(adm *admin.Admin) {
	if adm == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = adm.Shutdown(actx)
}

// startListening binds srv's listeners, then has up declare this process
// ready (PID file, start report, the replaced process told); when that
// fails after binding, srv is drained.
func startListening(ctx context.Context, srv *proxy.Server, up *upgrader, logger *zap.Logger, stderr io.Writer, report startReport) bool {
	if err := srv.Start(ctx); err != nil {
		logger.Error("cannot start", zap.Error(err))
		fmt.Fprintf(stderr, "tether: %v\n", err)
		report.failed(err.Error())
		return false
	}
	if err := up.ready(report); err != nil {
		logger.Error("cannot start", zap.Error(err))
		fmt.Fprintf(stderr, "tether: %v\n", err)
		report.failed(err.Error())
		drain(srv, logger)
		return false
	}
	return true
}

// watchParent logs, in its own goroutine, when the process this one
// replaced exits (upgrader.waitForParent). stop ends the watch and waits
// for the goroutine.
func watchParent(up *upgrader) (stop func()) {
	var bg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	bg.Add(1)
	go func() {
		defer bg.Done()
		up.waitForParent(ctx)
	}()
	return func() {
		cancel()
		bg.Wait()
	}
}

// serve handles signals until SIGTERM/SIGINT (ctx; false) or until a hot
// upgrade succeeded (true): SIGHUP reloads the whole config file, as POST
// /api/v1/reload does (Reload logs the changes, or every problem while the
// old config stays); SIGUSR2 upgrades, as POST /api/v1/upgrade does (the
// upgrader logs how it went).
func serve(ctx context.Context, hup, usr2 <-chan os.Signal, rl *admin.Reloader, up *upgrader) bool {
	var upgrades sync.WaitGroup
	defer upgrades.Wait()
	for {
		select {
		case <-hup:
			rl.Reload(ctx)
		case <-usr2:
			upgrades.Add(1)
			go func() {
				defer upgrades.Done()
				_, _, _ = up.upgrade(ctx)
			}()
		case <-up.upgraded():
			return true
		case <-ctx.Done():
			up.stop() // an upgrade under way ends: its new process is killed
			return false
		}
	}
}

// drainAfterUpgrade stops srv once a new process took its listeners: no
// more accepting here; open connections get the shutdown_timeout of the
// config in force; an idle keepalive client conn is not closed at once (it
// would race the client's next request) but answers its next request with
// Connection: close (ShutdownGently).
func drainAfterUpgrade(srv *proxy.Server, logger *zap.Logger) {
	timeout := srv.Config().Global.ShutdownTimeout
	logger.Info("upgraded: not accepting here; draining open connections (idle keepalive ones get one more request, answered with Connection: close)",
		zap.Duration("shutdown_timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.ShutdownGently(ctx); err != nil {
		logger.Warn("shutdown timeout reached; remaining connections were closed", zap.Error(err))
	}
}

// startLogging builds the logger of lc: to stderr, or with [log] file to
// that file, which SIGUSR1 then reopens (logfile.go). stop ends the
// reopener, flushes the logger and closes the file.
func startLogging(lc config.Log, stderr io.Writer) (logger *zap.Logger, stop func(), err error) {
	var out io.Writer = stderr
	var lf *logFile
	if lc.File != "" {
		if lf, err = openLogFile(lc.File); err != nil {
			return nil, nil, err
		}
		out = lf
	}
	if logger, err = newLogger(lc, out); err != nil {
		if lf != nil {
			_ = lf.Close()
		}
		return nil, nil, err
	}
	stopReopen := reopenOnSIGUSR1(lf, logger)
	return logger, func() {
		stopReopen()
		_ = logger.Sync()
		if lf != nil {
			_ = lf.Close()
		}
	}, nil
}

// drain stops srv: no more accepting, open connections get the
// shutdown_timeout of the config in force (reloads included), then the
// rest are closed.
func drain(srv *proxy.Server, logger *zap.Logger) {
	timeout := srv.Config().Global.ShutdownTimeout
	logger.Info("stopping: not accepting; draining open connections", zap.Duration("shutdown_timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.ShutdownGentlyFor(ctx, sigtermIdleGrace); err != nil {
		logger.Warn("shutdown timeout reached; remaining connections were closed", zap.Error(err))
	}
}

// sigtermIdleGrace is how long SIGTERM's drain keeps idle http client conns
// for a request already on its way (a fresh conn's first one, a keepalive
// client's next), answered with Connection: close; then they are closed.
// One second covers a round trip and a busy client's gap between requests,
// and keeps the exit prompt when clients just hold idle conns.
const sigtermIdleGrace = time.Second

func newLogger(lc config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(lc.Level)
	if err != nil {
		return nil, fmt.Errorf("log: level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	if lc.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), nil
}
