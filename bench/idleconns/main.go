// Command idleconns opens and holds idle TCP connections, for measuring what
// an idle proxied connection costs a proxy (bench/compare.sh).
//
// Client side: open N connections to ADDR, print "ready N" once all are
// established, then hold them until stdin closes or SIGINT/SIGTERM arrives.
//
//	idleconns -connect 127.0.0.1:7000 -n 5000
//
// Backend side: accept connections on ADDR and hold them (never read, never
// write), printing "accepted N" whenever the count of held connections
// changes (at most every 100 ms), until stdin closes or a signal arrives.
//
//	idleconns -hold 127.0.0.1:7001
//
// Every connection is plain TCP with Go's keepalive switched off, so nothing
// but the proxy's own timers touches it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	connect := flag.String("connect", "", "open connections to `ADDR`")
	hold := flag.String("hold", "", "accept and hold connections on `ADDR`")
	n := flag.Int("n", 1000, "number of connections to open (-connect)")
	par := flag.Int("parallel", 128, "connects in flight at once (-connect)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up if not all connected within this time (-connect)")
	waitStdin := flag.Bool("stdin", true, "also stop when stdin closes (pass -stdin=false when stdin is /dev/null)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Closing stdin (or EOF on it) ends the run too.
	if *waitStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	switch {
	case *connect != "" && *hold == "":
		os.Exit(runConnect(ctx, *connect, *n, *par, *timeout))
	case *hold != "" && *connect == "":
		os.Exit(runHold(ctx, *hold))
	default:
		fmt.Fprintln(os.Stderr, "usage: idleconns -connect ADDR -n N | idleconns -hold ADDR")
		os.Exit(2)
	}
}

func runConnect(ctx context.Context, addr string, n, par int, timeout time.Duration) int {
	d := net.Dialer{KeepAlive: -1, KeepAliveConfig: net.KeepAliveConfig{Enable: false}, Timeout: 10 * time.Second}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	conns := make([]net.Conn, n)
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr atomic.Value
		next     atomic.Int64
	)
	if par < 1 {
		par = 1
	}
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || dctx.Err() != nil {
					return
				}
				c, err := d.DialContext(dctx, "tcp", addr)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					cancel()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 || dctx.Err() != nil {
		err, _ := firstErr.Load().(error)
		if err == nil {
			err = dctx.Err()
		}
		fmt.Fprintf(os.Stderr, "idleconns: %d of %d connections failed: %v\n", f, n, err)
		return 1
	}
	fmt.Printf("ready %d\n", n)
	<-ctx.Done()
	return 0
}

func runHold(ctx context.Context, addr string) int {
	lc := net.ListenConfig{KeepAlive: -1, KeepAliveConfig: net.KeepAliveConfig{Enable: false}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "idleconns: %v\n", err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())

	var (
		mu    sync.Mutex
		conns []net.Conn
		count atomic.Int64
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// EMFILE and friends: back off, keep going.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			count.Add(1)
			// Notice a peer close so the count stays true, without ever
			// reading payload (a held conn sees no bytes).
			go func(c net.Conn) {
				var b [1]byte
				_, _ = c.Read(b[:])
				count.Add(-1)
			}(c)
		}
	}()

	last := int64(-1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			return 0
		case <-tick.C:
			if c := count.Load(); c != last {
				last = c
				fmt.Printf("accepted %d\n", c)
			}
		}
	}
}
