package merge

import (
	"bytes"
	"fmt"
	"strings"
)

// maxEditCost bounds the line diff's work (and memory, ~D² ints). Files
// whose versions differ by more edits than this are merged as if every line
// changed, which can only add conflicts, never hide one.
const maxEditCost = 2000

func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.SplitAfter(string(b), "\n")[:bytes.Count(b, []byte("\n"))+boolInt(b[len(b)-1] != '\n')]
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// match returns m with m[i] = j when a[i] is matched to b[j] by a longest
// common subsequence, -1 when a[i] is not in it. Matches are monotonic.
func match(a, b []string) []int {
	m := make([]int, len(a))
	for i := range m {
		m[i] = -1
	}
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		m[pre] = pre
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		m[len(a)-1-suf] = len(b) - 1 - suf
		suf++
	}
	myers(a[pre:len(a)-suf], b[pre:len(b)-suf], func(i, j int) { m[pre+i] = pre + j })
	return m
}

// myers runs Myers' O(ND) diff and calls matched for every pair of equal
// lines on the shortest edit script.
func myers(a, b []string, matched func(i, j int)) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return
	}
	max := n + m
	off := max
	v := make([]int, 2*max+2)
	var trace [][]int // trace[d][k+d] = v[k] after step d
	for d := 0; d <= max && d <= maxEditCost; d++ {
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				backtrack(trace, d, k, x, y, matched)
				return
			}
		}
		snap := make([]int, 2*d+1)
		copy(snap, v[off-d:off+d+1])
		trace = append(trace, snap)
	}
	// too different: no matches (treated as all lines changed)
}

func backtrack(trace [][]int, d, k, x, y int, matched func(i, j int)) {
	for ; d > 0; d-- {
		prev := trace[d-1]
		at := func(kk int) int { return prev[kk+d-1] }
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		sx := px
		if pk == k-1 {
			sx = px + 1
		}
		for x > sx {
			x--
			y--
			matched(x, y)
		}
		x, y, k = px, py, pk
	}
	for x > 0 && y > 0 {
		x--
		y--
		matched(x, y)
	}
}

func sameLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Lines merges three versions of a text file line by line (diff3). Hunks
// both sides changed differently are Conflicts keyed "lines A-B" (of the
// old version, 1-based); Text then holds the card's side for them.
func Lines(old, new, card []byte) Result {
	O, A, B := splitLines(old), splitLines(new), splitLines(card)
	ma, mb := match(O, A), match(O, B)
	var res Result
	var out strings.Builder
	o, a, b := 0, 0, 0
	for {
		j := o
		for j < len(O) && !(ma[j] >= 0 && mb[j] >= 0) {
			j++
		}
		ea, eb := len(A), len(B)
		if j < len(O) {
			ea, eb = ma[j], mb[j]
		}
		if j == o && ea == a && eb == b {
			if j == len(O) {
				break
			}
			out.WriteString(O[o])
			o, a, b = o+1, a+1, b+1
			continue
		}
		oc, ac, bc := O[o:j], A[a:ea], B[b:eb]
		switch {
		case sameLines(ac, oc):
			writeAll(&out, bc)
		case sameLines(bc, oc), sameLines(ac, bc):
			writeAll(&out, ac)
		default:
			key := fmt.Sprintf("lines %d-%d", o+1, j)
			if j == o {
				key = fmt.Sprintf("after line %d", o)
			} else if j == o+1 {
				key = fmt.Sprintf("line %d", o+1)
			}
			res.Conflicts = append(res.Conflicts, Conflict{Key: key,
				Reason: fmt.Sprintf("the base changed %d line(s) into %s, the card into %s", len(oc), quote(ac), quote(bc))})
			writeAll(&out, bc)
		}
		o, a, b = j, ea, eb
	}
	res.Text = []byte(out.String())
	return res
}

func writeAll(b *strings.Builder, l []string) {
	for _, s := range l {
		b.WriteString(s)
	}
}

func quote(l []string) string {
	if len(l) == 0 {
		return "nothing"
	}
	s := strings.TrimSuffix(strings.Join(l, ""), "\n")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}
