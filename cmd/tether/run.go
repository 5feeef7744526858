package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/admin"
	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config `FILE`")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: tether run -c FILE")
		return exitUsage
	}
	cfg, err := config.LoadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "tether: invalid configuration:\n%v\n", err)
		return exitError
	}
	logger, stopLogging, err := startLogging(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tether: %v\n", err)
		return exitError
	}
	defer stopLogging()
	for _, w := range cfg.Warnings {
		logger.Warn("config", zap.String("warning", w))
	}

	// SIGHUP reloads the config file (it would kill the process by
	// default). Registered before listening.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, err := proxy.New(cfg, logger)
	if err != nil {
		logger.Error("cannot build", zap.Error(err))
		return exitError
	}
	// The admin API first: /healthz answers while the listeners bind,
	// /ready once they are.
	rl := admin.NewReloader(*file, cfg, srv, logger)
	adm, err := startAdmin(ctx, cfg, *file, srv, rl, logger)
	if err != nil {
		logger.Error("cannot start the admin API", zap.Error(err))
		fmt.Fprintf(stderr, "tether: %v\n", err)
		_ = srv.Shutdown(context.Background()) // nothing bound: frees the pools
		return exitError
	}
	if adm != nil {
		defer func() {
			// After the proxy's drain, so that it can be watched.
			actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = adm.Shutdown(actx)
		}()
	}
	if err := srv.Start(ctx); err != nil {
		logger.Error("cannot start", zap.Error(err))
		fmt.Fprintf(stderr, "tether: %v\n", err)
		return exitError
	}
	logger.Info("started", zap.String("config", *file), zap.String("version", versionString()))

	reloadOnSIGHUP(ctx, hup, rl)
	drain(srv, logger)
	logger.Info("stopped")
	return exitOK
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

// reloadOnSIGHUP reloads the whole config file on each SIGHUP, as POST
// /api/v1/reload does (Reload logs the changes, or every problem while the
// old config stays), until ctx ends.
func reloadOnSIGHUP(ctx context.Context, hup <-chan os.Signal, rl *admin.Reloader) {
	for {
		select {
		case <-hup:
			rl.Reload(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// drain stops srv: no more accepting, open connections get the
// shutdown_timeout of the config in force (reloads included), then the
// rest are closed.
func drain(srv *proxy.Server, logger *zap.Logger) {
	timeout := srv.Config().Global.ShutdownTimeout
	logger.Info("stopping: not accepting; draining open connections", zap.Duration("shutdown_timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("shutdown timeout reached; remaining connections were closed", zap.Error(err))
	}
}

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
