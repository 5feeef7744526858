package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminListenAndToken(t *testing.T) {
	cases := []struct {
		name, admin string
		listen      string // want, when valid
		isDefault   bool
		problem     string // want in the error; "" = valid
	}{
		{"default on loopback", "", DefaultAdminListen, true, ""},
		{"off", "[admin]\nlisten = \"off\"\n", "", false, ""},
		{"empty", "[admin]\nlisten = \"\"\n", "", false, ""},
		{"loopback v4", "[admin]\nlisten = \"127.0.0.2:9000\"\n", "127.0.0.2:9000", false, ""},
		{"loopback v6", "[admin]\nlisten = \"[::1]:9000\"\n", "[::1]:9000", false, ""},
		{"localhost", "[admin]\nlisten = \"localhost:9000\"\n", "localhost:9000", false, ""},
		{"port 0", "[admin]\nlisten = \"127.0.0.1:0\"\n", "127.0.0.1:0", false, ""},
		{"public with token", "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"/etc/tether/token\"\n", "0.0.0.0:9901", false, ""},
		{"public without token", "[admin]\nlisten = \"0.0.0.0:9901\"\n", "", false, `admin: listen: "0.0.0.0:9901" is not a loopback address: set token_file`},
		{"all addresses without token", "[admin]\nlisten = \":9901\"\n", "", false, `admin: listen: ":9901" is not a loopback address`},
		{"name without token", "[admin]\nlisten = \"admin.example:9901\"\n", "", false, `admin: listen: "admin.example:9901" is not a loopback address`},
		{"no port", "[admin]\nlisten = \"127.0.0.1\"\n", "", false, `admin: listen: "127.0.0.1": missing port`},
		{"unknown key", "[admin]\nlisen = \"127.0.0.1:1\"\n", "", false, `unknown key "admin.lisen" (did you mean "listen"?)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.admin + base))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("error %v, want one containing %q", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Admin.Listen != tc.listen || cfg.Admin.ListenDefault != tc.isDefault {
				t.Errorf("admin %+v, want listen %q default %v", cfg.Admin, tc.listen, tc.isDefault)
			}
		})
	}
}

func TestAdminTokenFileIsRelativeToTheConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(path, []byte("[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"token\"\n"+base), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "token"); cfg.Admin.TokenFile != want {
		t.Errorf("token_file %q, want %q", cfg.Admin.TokenFile, want)
	}
}
