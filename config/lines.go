package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines knows the line each key of a TOML document is written on, so
// that a problem can name its line. BurntSushi/toml (v1.6.0) keeps key
// positions to itself (MetaData has none to give), so keyLines scans the
// text again: only after the decoder accepted it, and only as far as keys,
// tables and the extent of values go.
//
// Keys are located two ways:
//   - by place: the table path with the index of each array element, e.g.
//     virtual_server/1/tls/certificates/0/cert (see loc), which validation
//     uses;
//   - by name: toml.Key's String() without indexes, each occurrence in
//     document order, as MetaData.Undecoded lists unknown keys.
type keyLines struct {
	byPlace map[string]int
	byName  map[string][]int

	src    string
	i      int
	starts []int          // offset of the start of each line
	arrays map[string]int // elements so far of each array of tables, by place
}

// loc joins a place: table names, keys and array indexes.
func loc(parts ...string) string { return strings.Join(parts, "\x00") }

// line returns the line of the key at place (1-based), or 0.
func (k *keyLines) line(place string) int { return k.byPlace[place] }

func scanKeyLines(src string) *keyLines {
	k := &keyLines{
		byPlace: map[string]int{},
		byName:  map[string][]int{},
		src:     src,
		arrays:  map[string]int{},
		starts:  []int{0},
	}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			k.starts = append(k.starts, i+1)
		}
	}
	k.document()
	return k
}

// lineAt returns the line (1-based) of byte offset i.
func (k *keyLines) lineAt(i int) int { return sort.SearchInts(k.starts, i+1) }

// record notes a key (or table header) written at offset at, by place and
// by name.
func (k *keyLines) record(place, name []string, at int) {
	k.recordPlace(place, at)
	n := toml.Key(name).String()
	k.byName[n] = append(k.byName[n], k.lineAt(at))
}

// recordPlace notes a place only: the first line that names it wins.
func (k *keyLines) recordPlace(place []string, at int) {
	p := loc(place...)
	if _, ok := k.byPlace[p]; !ok {
		k.byPlace[p] = k.lineAt(at)
	}
}

func (k *keyLines) peek(s string) bool { return strings.HasPrefix(k.src[k.i:], s) }

// blank skips spaces, tabs and, with newlines, line ends and comments.
func (k *keyLines) blank(newlines bool) {
	for k.i < len(k.src) {
		switch c := k.src[k.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			k.i++
		case c == '#' && newlines:
			for k.i < len(k.src) && k.src[k.i] != '\n' {
				k.i++
			}
		case c == '\n' && newlines:
			k.i++
		default:
			return
		}
	}
}

// document reads table headers and key/value lines to the end.
func (k *keyLines) document() {
	var place, name []string // the current table
	if strings.HasPrefix(k.src, "\ufeff") {
		k.i = len("\ufeff")
	}
	for {
		k.blank(true)
		if k.i >= len(k.src) {
			return
		}
		start := k.i
		switch {
		case k.peek("[["):
			k.i += 2
			parts := k.key()
			k.i += 2 // ]]
			place, name = k.resolve(parts, true), parts
			k.record(place, name, start)
		case k.peek("["):
			k.i++
			parts := k.key()
			k.i++ // ]
			place, name = k.resolve(parts, false), parts
			k.record(place, name, start)
		default:
			k.pair(place, name)
		}
		if k.i == start { // not TOML after all: stop rather than loop
			return
		}
	}
}

// resolve turns a header's names into a place: a name that is an array of
// tables stands for its last element; a new [[array]] element is counted.
func (k *keyLines) resolve(parts []string, newElement bool) []string {
	var place []string
	for j, p := range parts {
		place = append(place, p)
		n, isArray := k.arrays[loc(place...)]
		last := j == len(parts)-1
		switch {
		case last && newElement:
			k.arrays[loc(place...)] = n + 1
			place = append(place, strconv.Itoa(n))
		case isArray:
			place = append(place, strconv.Itoa(n-1))
		}
	}
	return place
}

// pair reads key = value within the table at place (name without indexes).
func (k *keyLines) pair(place, name []string) {
	start := k.i
	parts := k.key()
	if len(parts) == 0 {
		return
	}
	p, n := append(append([]string{}, place...), parts...), append(append([]string{}, name...), parts...)
	for j := len(place) + 1; j < len(p); j++ { // the tables a dotted key defines
		k.recordPlace(p[:j], start)
	}
	k.record(p, n, start)
	k.blank(false)
	if k.peek("=") {
		k.i++
	}
	k.blank(false)
	k.value(p, n)
}

// key reads a dotted key of bare and quoted parts.
func (k *keyLines) key() []string {
	var parts []string
	for {
		k.blank(false)
		if k.i >= len(k.src) {
			return parts
		}
		switch c := k.src[k.i]; {
		case c == '"' || c == '\'':
			start := k.i
			k.str()
			raw := k.src[start:k.i]
			if c == '"' {
				if s, err := strconv.Unquote(raw); err == nil {
					raw = s
				} else {
					raw = raw[1 : len(raw)-1]
				}
			} else {
				raw = raw[1 : len(raw)-1]
			}
			parts = append(parts, raw)
		default:
			start := k.i
			for k.i < len(k.src) && isBareKeyByte(k.src[k.i]) {
				k.i++
			}
			if k.i == start {
				return parts
			}
			parts = append(parts, k.src[start:k.i])
		}
		k.blank(false)
		if !k.peek(".") {
			return parts
		}
		k.i++
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// str skips one string of any of the four kinds.
func (k *keyLines) str() {
	for _, q := range []string{`"""`, `'''`} {
		if k.peek(q) {
			end := strings.Index(k.src[k.i+3:], q)
			if q[0] == '"' {
				end = closingQuote(k.src[k.i+3:], q)
			}
			if end < 0 {
				k.i = len(k.src)
				return
			}
			k.i += 3 + end + 3
			for k.i < len(k.src) && k.src[k.i] == q[0] { // up to two quotes end the content
				k.i++
			}
			return
		}
	}
	q := k.src[k.i : k.i+1]
	if q == `"` {
		if end := closingQuote(k.src[k.i+1:], q); end >= 0 {
			k.i += 1 + end + 1
			return
		}
	} else if end := strings.Index(k.src[k.i+1:], q); end >= 0 {
		k.i += 1 + end + 1
		return
	}
	k.i = len(k.src)
}

// closingQuote finds q in s, skipping backslash escapes.
func closingQuote(s, q string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if strings.HasPrefix(s[i:], q) {
			return i
		}
	}
	return -1
}

// value skips a value, recording the keys of inline tables in it.
func (k *keyLines) value(place, name []string) {
	if k.i >= len(k.src) {
		return
	}
	switch k.src[k.i] {
	case '"', '\'':
		k.str()
	case '[':
		k.i++
		for n := 0; ; n++ {
			k.blank(true)
			if k.i >= len(k.src) {
				return
			}
			if k.src[k.i] == ']' {
				k.i++
				return
			}
			start := k.i
			elem := append(append([]string{}, place...), strconv.Itoa(n))
			if k.src[k.i] == '{' {
				k.recordPlace(elem, start)
			}
			k.value(elem, name)
			k.blank(true)
			if k.peek(",") {
				k.i++
			} else if k.i == start {
				k.i++ // not a value: step over it
			}
		}
	case '{':
		k.i++
		for {
			k.blank(true) // TOML 1.1 allows newlines in inline tables
			if k.i >= len(k.src) {
				return
			}
			if k.src[k.i] == '}' {
				k.i++
				return
			}
			start := k.i
			k.pair(place, name)
			k.blank(true)
			if k.peek(",") {
				k.i++
			} else if k.i == start {
				k.i++
			}
		}
	default: // number, boolean, date-time: up to what ends a value
		for k.i < len(k.src) && !strings.ContainsRune(",]}#\n", rune(k.src[k.i])) {
			k.i++
		}
	}
}
