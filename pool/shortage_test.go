package pool

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tetherproxy/tether/config"
)

// A dial that fails for tether's own shortage (here EADDRNOTAVAIL, as when
// every local port is taken; EMFILE is classed the same) says so in words,
// and neither the active checks nor passive health count it against the
// member: the member was never asked. (Before, a tether out of fds or
// ports marked every member down, and stayed 503 for a rise after the
// shortage ended.)
func TestShortageIsNotTheMembersFault(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Health = fastHealth(1, 1)
	cfg.ConnectRetries = 0
	core, logs := observer.New(zapcore.InfoLevel)
	p, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// A source address that is not local: bind fails with EADDRNOTAVAIL.
	nowhere := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}
	p.probe.LocalAddr = nowhere
	d := p.Dialer(config.DefaultProfile())
	d.nd.LocalAddr = nowhere
	p.Start()
	defer p.Close()
	m := p.Members()[0]

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		_, err := d.Connect(ctx, nil)
		if err == nil || !strings.Contains(err.Error(), "no local port free toward "+b.addr) {
			t.Fatalf("connect: %v; want the shortage named", err)
		}
	}
	time.Sleep(300 * time.Millisecond) // 6 check intervals, fall = 1
	if s := m.Stats(); s.State != Up || s.Checks != 0 || s.HealthTransitions != 0 {
		t.Fatalf("member after tether's own shortage: %+v; want up, no check counted", s)
	}
	if n := logs.FilterMessage("health check could not run").Len(); n != 1 {
		t.Errorf("%d \"health check could not run\" lines, want 1 (once per shortage)", n)
	}
	if n := logs.FilterMessage("member down").Len(); n != 0 {
		t.Errorf("member marked down %d times", n)
	}

}
