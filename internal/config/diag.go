package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is where a value stands in a config file, and the field path to it.
type Pos struct {
	File      string
	Line, Col int
	Path      string
}

// Diag is one error or warning about a config file.
type Diag struct {
	Pos
	Msg string
}

// Error formats the diagnostic as file:line:col: field: what is wrong.
func (d Diag) Error() string {
	if d.Path == "" {
		return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", d.File, d.Line, d.Col, d.Path, d.Msg)
}

// Errors is every error found in a set of config files, in file and line order.
type Errors []Diag

func (e Errors) Error() string {
	var b strings.Builder
	for i, d := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.Error())
	}
	return b.String()
}

// dedup sorts diagnostics by place and drops repeats: a kind rule applied
// to many sensors can find the same fault in each.
func dedup(ds []Diag) []Diag {
	slices.SortStableFunc(ds, func(a, b Diag) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Msg, b.Msg))
	})
	return slices.Compact(ds)
}

// Suggest returns the candidate closest to s when it is a plausible typo
// (two edits at most), else "": the "did you mean" of config errors.
func Suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
