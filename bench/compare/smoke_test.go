package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// One short real run of the program: the http scenario with 1 s loads,
// direct and through HAProxy, nginx and tether. It checks that every
// target served without errors, that the table and the JSON say so, and
// that HAProxy and tether pooled the member (HAProxy's http-reuse always:
// with "safe" every Connection: close client conn opened a member conn).
func TestQuickHTTPRunMeasuresEveryTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("a real run of about 20 s")
	}
	for _, p := range [][2]string{{"wrk", "wrk"}, {"haproxy", "haproxy"}, {"nginx", "nginx"}, {"taskset", "util-linux"}} {
		socktest.Need(t, p[0], p[1])
	}
	sections := runQuick(t, "http", 3*time.Minute, "| keepalive ", "| Connection: close ", "tether/haproxy", "tether/nginx", "produced by:", "wrk -c 50 -t 1 -d 1s")
	if len(sections) != 2 || sections[0].Key != "http" {
		t.Fatalf("sections: %+v", sections)
	}
	figs := sections[0].Samples
	one := func(target, metric string) float64 {
		v := figs[target][metric]
		if len(v) != 1 {
			t.Fatalf("%s %s: %v, want one round's value", target, metric, v)
		}
		return v[0]
	}
	for _, target := range []string{"direct", "haproxy", "nginx", "tether"} {
		for _, sc := range []string{"ka", "close"} {
			if rps := one(target, sc+".rps"); rps <= 0 {
				t.Errorf("%s %s: %v req/s", target, sc, rps)
			}
			if e := one(target, sc+".errors"); e != 0 {
				t.Errorf("%s %s: %v errors", target, sc, e)
			}
			if target != "direct" && one(target, sc+".cpu_s") <= 0 {
				t.Errorf("%s %s: no proxy CPU measured", target, sc)
			}
		}
	}
	// Each proxy at its best keeps about one member conn per client conn
	// (wrk -c 50): nginx's upstream keepalive no longer below it.
	for _, target := range []string{"haproxy", "nginx", "tether"} {
		if n := one(target, "ka.backend_conns"); n > tetherPoolMax {
			t.Errorf("%s opened %v member conns for %d keepalive clients", target, n, wrkConns)
		}
	}
	if n := one("tether", "close.backend_conns"); n > tetherPoolMax {
		t.Errorf("tether opened %v member conns, more than its pool (%d)", n, tetherPoolMax)
	}
	if n, reqs := one("haproxy", "close.backend_conns"), one("haproxy", "close.requests"); n > reqs/10 {
		t.Errorf("HAProxy opened %v member conns for %v Connection: close requests: not reusing", n, reqs)
	}
}

// quickSection is what the tests of quick runs read of a section in the
// JSON file.
type quickSection struct {
	Key     string                          `json:"key"`
	Samples map[string]map[string][]float64 `json:"samples"`
}

// runQuick runs the program with -quick -only only -d 1s within timeout,
// fails t unless it exits 0, writes one JSON file and its table holds each
// of want, and returns the sections of that file.
func runQuick(t *testing.T, only string, timeout time.Duration, want ...string) []quickSection {
	t.Helper()
	out := t.TempDir()
	o, err := parseFlags([]string{"-quick", "-only", only, "-d", "1s", "-out", out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var table strings.Builder
	if code := run(ctx, o, &table); code != 0 {
		t.Fatalf("exit %d:\n%s", code, table.String())
	}
	for _, w := range want {
		if !strings.Contains(table.String(), w) {
			t.Errorf("the report lacks %q:\n%s", w, table.String())
		}
	}
	files, _ := filepath.Glob(filepath.Join(out, "compare-*.json"))
	if len(files) != 1 {
		t.Fatalf("JSON files in -out: %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Sections []quickSection `json:"sections"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Sections
}
