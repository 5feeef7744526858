package config

import (
	"bytes"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// Effective renders cfg as TOML with every default filled in and every
// profile resolved through its parents (`tether check --print`).
func Effective(cfg *Config) (string, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(cfg); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// Defaults renders the built-in defaults as TOML: the root profile, a pool's
// settings, a tcp-mode virtual server's and an http-mode one's with its
// [virtual_server.http] table (`tether check --print-defaults`). TLS
// defaults are in the README: a TLS table needs certificate files.
func Defaults() (string, error) {
	cfg, err := Parse([]byte(`
[pool.example]
members = [{ address = "127.0.0.1:8080" }]
[[virtual_server]]
name = "example"
listen = "127.0.0.1:80"
pool = "example"
[[virtual_server]]
name = "example-http"
listen = "127.0.0.1:8000"
mode = "http"
pool = "example"
`))
	if err != nil {
		return "", err
	}
	cfg.Warnings = nil
	return Effective(cfg)
}

// tagNames lists the TOML keys of a struct type, for "did you mean" hints.
func tagNames(v any) []string {
	t := reflect.TypeOf(v)
	names := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
