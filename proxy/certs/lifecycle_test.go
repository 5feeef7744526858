package certs

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestCloseLeavesNoGoroutine(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "life-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.WatchInterval = time.Millisecond
	c.TicketKeyRotation = time.Millisecond
	before := goleak.IgnoreCurrent()

	m, err := New(c, nil) // starts certmagic's cache maintenance
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil { // watcher, ticket rotation
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("a second Start was accepted")
	}
	socktest.WaitFor(t, 5*time.Second, "a ticket key rotation", func() bool { return m.keysMade.Load() > 2 })
	m.Close()
	m.Close() // again: a no-op
	goleak.VerifyNone(t, before)
	if err := m.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestCloseWithoutStart(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "life-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	before := goleak.IgnoreCurrent()
	m, err := New(staticConfig(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	goleak.VerifyNone(t, before)
}

func TestStartEndsWithItsContext(t *testing.T) {
	ca := testpki.NewCA(t, testpki.CAOptions{Name: "life-ca"})
	a := files(ca.Issue(t, "a", "a.tether.test", testpki.Options{}))
	c := staticConfig(a)
	c.WatchInterval = time.Millisecond
	before := goleak.IgnoreCurrent()
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	m.wg.Wait() // the watcher and the rotation end without Close
	m.Close()
	goleak.VerifyNone(t, before)
}
