package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdownTable prints a Markdown table, its columns padded to the
// widest cell: the first left columns (and a last text column when
// lastLeft) aligned left, the numbers right. The bench programs (soak,
// compare) print their reports with it.
func WriteMarkdownTable(w io.Writer, hdr []string, body [][]string, left int, lastLeft bool) {
	width := make([]int, len(hdr))
	for _, r := range append([][]string{hdr}, body...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i < left || (lastLeft && i == len(cells)-1) {
				b.WriteString(" " + c + pad + " |")
			} else {
				b.WriteString(" " + pad + c + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(hdr)
	var sep strings.Builder
	sep.WriteString("|")
	for _, n := range width {
		sep.WriteString(strings.Repeat("-", n+2) + "|")
	}
	fmt.Fprintln(w, sep.String())
	for _, r := range body {
		line(r)
	}
}
