package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/admin"
	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy"
)

// startAdmin starts the admin API of cfg ([admin]) on srv, or returns nil
// when it is off. Its listener comes through up (received from the
// replaced process or systemd, kept for the next one); up serves POST
// /api/v1/upgrade. Left at its default address, a port already in use is
// logged and tether runs without it (another tether may hold it); set in
// the file, every failure is an error.
func startAdmin(ctx context.Context, cfg *config.Config, path string, srv *proxy.Server, rl *admin.Reloader, up *upgrader, logger *zap.Logger) (*admin.Admin, error) {
	ac := cfg.Admin
	if ac.Listen == "" {
		return nil, nil
	}
	var token string
	if ac.TokenFile != "" {
		b, err := os.ReadFile(ac.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin: token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("admin: token_file %q is empty", ac.TokenFile)
		}
	}
	a, err := admin.New(admin.Options{
		Listen:     ac.Listen,
		Token:      token,
		ConfigPath: path,
		Version:    versionString(),
		Server:     srv,
		Metrics:    admin.MetricsHandler(srv, rl.Status),
		Reloader:   rl,
		Logger:     logger.Named("admin"),
		Listener:   up.adminListener,
		Upgrade:    up.upgrade,
	})
	if err != nil {
		return nil, err
	}
	if err := a.Start(ctx); err != nil {
		if ac.ListenDefault && errors.Is(err, syscall.EADDRINUSE) {
			logger.Warn("admin API off: its default address is in use; set [admin] listen", zap.String("listen", ac.Listen), zap.Error(err))
			return nil, nil
		}
		return nil, err
	}
	return a, nil
}
