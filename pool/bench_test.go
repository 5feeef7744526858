package pool

import (
	"net/netip"
	"testing"

	"github.com/tetherproxy/tether/config"
)

func BenchmarkPick(b *testing.B) {
	client := netip.MustParseAddr("192.0.2.7")
	for _, method := range config.Methods {
		b.Run(method, func(b *testing.B) {
			ms := testMembers(3, 1, 2, 1, 1, 2, 1, 1)
			bal, err := newBalancer(method, len(ms))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				bal.pick(ms, client)
			}
		})
	}
}
