package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong in a config file: a syntax error, an unknown
// key, or a value that fails validation.
type Problem struct {
	Line int    // where it is written, from 1; 0 = no one line (a key left out of a table the file does not write)
	Col  int    // syntax errors only; 0 otherwise
	Msg  string // what is wrong, naming the key: `pool "api": max_idle: must be >= 0`
}

// Error is every problem of a file (Parse and LoadFile return it), in line
// order; Error() gives one per line: "tether.toml:12: msg" from LoadFile,
// "line 12: msg" from Parse.
type Error struct {
	File     string // as given to LoadFile; "" from Parse
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File != "" && p.Line > 0 && p.Col > 0:
			fmt.Fprintf(&b, "%s:%d:%d: ", e.File, p.Line, p.Col)
		case e.File != "" && p.Line > 0:
			fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
		case e.File != "":
			fmt.Fprintf(&b, "%s: ", e.File)
		case p.Line > 0 && p.Col > 0:
			fmt.Fprintf(&b, "line %d, column %d: ", p.Line, p.Col)
		case p.Line > 0:
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// sortProblems orders problems by line, those without one last, keeping
// the order they were found in within a line.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			return cmp.Compare(b.Line, a.Line) // the one with a line first
		}
		return cmp.Compare(a.Line, b.Line)
	})
}
