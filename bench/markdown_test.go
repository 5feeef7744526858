package bench

import (
	"strings"
	"testing"
)

func TestMarkdownTableAlignsTextLeftAndNumbersRight(t *testing.T) {
	var b strings.Builder
	WriteMarkdownTable(&b, []string{"name", "µs", "note"}, [][]string{{"ka", "1234", "ok"}, {"close", "5", "slower"}}, 1, true)
	want := `| name  |   µs | note   |
|-------|------|--------|
| ka    | 1234 | ok     |
| close |    5 | slower |
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
