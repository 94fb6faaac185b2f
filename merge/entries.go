package merge

import (
	"path"
	"strings"
)

type entry struct {
	key  string
	line string
}

func parseEntries(b []byte) []entry {
	var out []entry
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	for i, l := range strings.Split(s, "\n") {
		k, _, ok := strings.Cut(l, ":")
		if !ok || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-") {
			// comments and NIS lines: keyed by their text so they survive.
			k = "#" + l
			_ = i
		}
		out = append(out, entry{key: k, line: l})
	}
	return out
}

// Entries merges passwd/group/shadow/gshadow by entry (key = name). rel
// chooses the id clash check: etc/passwd checks uid (3rd field) and
// etc/group gid (3rd field). Order: the card's entries in the card's order,
// then entries only the base added, in the base's order.
func Entries(rel string, old, new, card []byte) Result {
	ol, nl, cl := parseEntries(old), parseEntries(new), parseEntries(card)
	idx := func(l []entry) map[string]string {
		m := make(map[string]string, len(l))
		for _, e := range l {
			m[e.key] = e.line
		}
		return m
	}
	om, nm, cm := idx(ol), idx(nl), idx(cl)
	var res Result
	var lines []string
	seen := map[string]bool{}
	consider := func(k string) {
		if seen[k] {
			return
		}
		seen[k] = true
		o, po := om[k]
		n, pn := nm[k]
		c, pc := cm[k]
		switch pick3(o, n, c, po, pn, pc) {
		case "card":
			if pc {
				lines = append(lines, c)
			}
		case "new":
			if pn {
				lines = append(lines, n)
			}
		default:
			res.Conflicts = append(res.Conflicts, Conflict{Key: k,
				Reason: "changed in the base (" + show(n, pn) + ") and on the card (" + show(c, pc) + ")"})
			if pc {
				lines = append(lines, c)
			}
		}
	}
	for _, e := range cl {
		consider(e.key)
	}
	for _, e := range nl {
		consider(e.key)
	}
	for _, e := range ol {
		consider(e.key)
	}
	// id clashes: two names with one numeric id.
	base := path.Base(rel)
	if base == "passwd" || base == "group" {
		owner := map[string]string{}
		for _, l := range lines {
			f := strings.Split(l, ":")
			if len(f) < 3 || strings.HasPrefix(f[0], "#") {
				continue
			}
			id := f[2]
			if prev, ok := owner[id]; ok && prev != f[0] {
				what := "uid"
				if base == "group" {
					what = "gid"
				}
				res.Conflicts = append(res.Conflicts, Conflict{Key: f[0],
					Reason: what + " " + id + " is also " + prev + "'s (one side added each)"})
				continue
			}
			owner[id] = f[0]
		}
	}
	if len(lines) > 0 {
		res.Text = []byte(strings.Join(lines, "\n") + "\n")
	} else {
		res.Text = []byte{}
	}
	return res
}

func show(line string, present bool) string {
	if !present {
		return "removed"
	}
	// never print password hashes in messages
	f := strings.Split(line, ":")
	if len(f) > 1 && f[1] != "" && f[1] != "x" && f[1] != "*" && f[1] != "!" {
		f[1] = "<hash>"
	}
	return strings.Join(f, ":")
}
