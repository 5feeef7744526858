package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogFileDefaultsToStderrAndIsRelativeToTheConfig(t *testing.T) {
	cfg, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.File != "" {
		t.Errorf("log.file default %q, want \"\" (stderr)", cfg.Log.File)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tether.toml")
	if err := os.WriteFile(path, []byte("[log]\nfile = \"tether.log\"\n"+base), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "tether.log"); cfg.Log.File != want {
		t.Errorf("log.file %q, want %q", cfg.Log.File, want)
	}
	if _, err := os.Stat(cfg.Log.File); !os.IsNotExist(err) {
		t.Errorf("loading the config created the log file (check must not): %v", err)
	}
	out, err := Effective(cfg)
	if err != nil || !strings.Contains(out, "file = "+`"`+cfg.Log.File+`"`) {
		t.Errorf("--print lacks the log file: %v\n%s", err, out)
	}
}

func TestLogFileThatIsADirectoryIsAProblem(t *testing.T) {
	dir := t.TempDir()
	_, err := Parse([]byte("[log]\nfile = " + `"` + dir + `"` + "\n" + base))
	want := `line 2: log: file: "` + dir + `" is a directory`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}
