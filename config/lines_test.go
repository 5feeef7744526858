package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const trickyTOML = `# a comment [not.a.table] key = 1
"quoted.key" = 1
dotted . spaced = 2
[a]
s1 = """
[fake.table]
fake = 1 \"""
"""
s2 = '''
[[also.fake]]'''
s3 = "with # and \" and ]"
arr = [ 1, [2, 3], { x = 1 }, # comment ]
  { y = "}" },
]
date = 1979-05-27 07:32:00Z
[[b.c]]
k = 1
[[b.c]]
k = 2
[b.c.d]
e = { f = { g = 1 } }
[ 'literal key' . "x y" ]
z = true
`

// Every key the decoder sees is found on a line that writes it, as many
// times as the decoder lists it.
func TestKeyLinesFindsEveryKey(t *testing.T) {
	docs := map[string]string{"tricky": trickyTOML}
	files, _ := filepath.Glob("../examples/*.toml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(b)
	}
	for name, doc := range docs {
		checkKeyLines(t, name, doc)
	}
}

func checkKeyLines(t *testing.T, name, doc string) {
	t.Helper()
	var v any
	md, err := toml.Decode(doc, &v)
	if err != nil {
		return // not TOML: nothing to locate
	}
	kl := scanKeyLines(doc)
	text := strings.Split(doc, "\n")
	seen := map[string]int{}
	for _, k := range md.Keys() {
		s := k.String()
		n := seen[s]
		seen[s]++
		lines := kl.byName[s]
		if n >= len(lines) {
			t.Errorf("%s: key %s (occurrence %d) has no line; found %v", name, s, n+1, lines)
			continue
		}
		last := k[len(k)-1]
		bare := strings.Trim(last, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == "" && last != ""
		if l := lines[n]; l < 1 || l > len(text) || bare && !strings.Contains(text[l-1], last) { // an escaped quoted key is written otherwise
			t.Errorf("%s: key %s found on line %d, which does not write %q", name, s, l, last)
		}
	}
}

// scanKeyLines ends, and agrees with the decoder, on whatever it accepts.
func FuzzKeyLines(f *testing.F) {
	f.Add(trickyTOML)
	f.Add(base)
	files, _ := filepath.Glob("../examples/*.toml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, doc string) {
		checkKeyLines(t, "input", doc)
	})
}
