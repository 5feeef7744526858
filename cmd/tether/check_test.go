package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of tether check's output")

// tether check's whole output (exit code, stdout, stderr) on each file of
// testdata/check matches its .golden file; go test -run TestCheckOutput
// -update rewrites them.
func TestCheckOutputMatchesGoldenFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/check/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/check/*.toml: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errOut := runCLI("check", "-c", f)
			got := fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", code, out, errOut)
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("check -c %s:\n%s\nwant (%s):\n%s", f, got, golden, want)
			}
		})
	}
}
