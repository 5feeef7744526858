package sockopt

import (
	"testing"

	"github.com/tetherproxy/tether/config"
)

// BenchmarkApply measures the per-accept cost of Apply (testProfile sets
// every per-connection option: 7 setsockopt calls).
func BenchmarkApply(b *testing.B) {
	p := testProfile()
	ln, err := Listen(b.Context(), config.DefaultProfile(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := Dialer(config.DefaultProfile(), 0).Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	a, err := ln.AcceptTCP()
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := Apply(a, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAlive(b *testing.B) {
	ln, err := Listen(b.Context(), config.DefaultProfile(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := Dialer(config.DefaultProfile(), 0).Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	a, err := ln.AcceptTCP()
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := Alive(a); err != nil {
			b.Fatal(err)
		}
	}
}
