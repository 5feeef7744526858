package pool

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
)

// BenchmarkGetPut is the pool's share of an http request on a warm pool:
// Get (pick, pop, MSG_PEEK), Retire, Put (push). No bytes move.
func BenchmarkGetPut(b *testing.B) {
	for _, bc := range []struct {
		name    string
		members int
	}{{"1member", 1}, {"3members", 3}} {
		b.Run(bc.name, func(b *testing.B) {
			var addrs []string
			for range bc.members {
				be := newLineBackend(b, 0)
				addrs = append(addrs, be.addr)
			}
			cfg := testPool(config.MethodRoundRobin, addrs...)
			p, err := New(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			p.Start()
			defer p.Close()
			r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, PeekInterval: time.Hour}))
			defer r.Close()
			ctx := context.Background()
			client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
			warm := make([]*ServerConn, bc.members) // one idle conn per member
			for i := range warm {
				if warm[i], err = r.Get(ctx, client); err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range warm {
				r.Put(c, true)
			}
			b.ReportAllocs()
			for b.Loop() {
				c, err := r.Get(ctx, client)
				if err != nil {
					b.Fatal(err)
				}
				c.Retire()
				r.Put(c, true)
			}
		})
	}
}

// BenchmarkGetPutParallel is BenchmarkGetPut from GOMAXPROCS goroutines on
// one member (contention on the ConnPool's lock).
func BenchmarkGetPutParallel(b *testing.B) {
	be := newLineBackend(b, 0)
	p, err := New(testPool(config.MethodRoundRobin, be.addr), nil)
	if err != nil {
		b.Fatal(err)
	}
	p.Start()
	defer p.Close()
	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{MaxIdle: 64, IdleTimeout: time.Minute, PeekInterval: time.Hour}))
	defer r.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			c, err := r.Get(ctx, nil)
			if err != nil {
				b.Error(err)
				return
			}
			r.Put(c, true)
		}
	})
}
