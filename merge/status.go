package merge

import (
	"bytes"
	"sort"
	"strings"
)

// stanza is one paragraph of a deb822-style status file.
type stanza struct {
	key  string
	text string // the paragraph, lines joined with "\n", no trailing blank line
}

func parseStanzas(b []byte) (list []stanza, sorted bool) {
	sorted = true
	var cur []string
	flush := func() {
		if len(cur) == 0 {
			return
		}
		text := strings.Join(cur, "\n")
		var pkg, arch string
		for _, l := range cur {
			if v, ok := field(l, "Package"); ok {
				pkg = v
			} else if v, ok := field(l, "Architecture"); ok {
				arch = v
			}
		}
		if pkg == "" { // apk's lib/apk/db/installed: one-letter keys
			for _, l := range cur {
				if strings.HasPrefix(l, "P:") {
					pkg = l[2:]
				} else if strings.HasPrefix(l, "A:") {
					arch = l[2:]
				}
			}
		}
		key := pkg
		if arch != "" && arch != "all" && arch != "noarch" {
			key = pkg + ":" + arch
		}
		if key == "" {
			key = "#" + text // keep unknown paragraphs as-is, keyed by content
		}
		if n := len(list); n > 0 && list[n-1].key > key {
			sorted = false
		}
		list = append(list, stanza{key: key, text: text})
		cur = nil
	}
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return list, sorted
}

func field(line, name string) (string, bool) {
	if len(line) > len(name) && line[len(name)] == ':' && strings.EqualFold(line[:len(name)], name) {
		return strings.TrimSpace(line[len(name)+1:]), true
	}
	return "", false
}

// StatusField returns the value of field name in a status stanza text.
func statusField(text, name string) string {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := field(l, name); ok {
			return v
		}
	}
	return ""
}

func index(list []stanza) map[string]string {
	m := make(map[string]string, len(list))
	for _, s := range list {
		m[s.key] = s.text
	}
	return m
}

// Status merges dpkg/opkg status files (and apk's lib/apk/db/installed,
// whose paragraphs are keyed by their P: line) by package stanza. See the package
// documentation for the rules. It never reports conflicts; stanzas both
// sides changed keep the card's version and are listed in Notes.
func Status(old, new, card []byte) Result {
	ol, _ := parseStanzas(old)
	nl, _ := parseStanzas(new)
	cl, cardSorted := parseStanzas(card)
	om, nm, cm := index(ol), index(nl), index(cl)

	var res Result
	out := map[string]string{}
	var order []string
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
				out[k] = c
				order = append(order, k)
			}
		case "new":
			if pn {
				out[k] = n
				order = append(order, k)
			}
			if pn && pc {
				res.Notes = append(res.Notes, "package "+k+": base changed it ("+describe(o, po)+" -> "+describe(n, pn)+"), card had not; base's record taken")
			} else if !pn {
				res.Notes = append(res.Notes, "package "+k+": removed from the base; card had not changed it; dropped")
			}
		default:
			if pc {
				out[k] = c
				order = append(order, k)
			}
			res.Notes = append(res.Notes, "package "+k+": changed in both the base ("+describe(n, pn)+") and on the card ("+describe(c, pc)+"); the card's record kept because the card's files shadow the base's")
		}
	}
	for _, s := range cl {
		consider(s.key)
	}
	for _, s := range nl {
		consider(s.key)
	}
	for _, s := range ol {
		consider(s.key)
	}
	if cardSorted {
		sort.SliceStable(order, func(i, j int) bool { return order[i] < order[j] })
	}
	var b bytes.Buffer
	for _, k := range order {
		b.WriteString(out[k])
		b.WriteString("\n\n")
	}
	res.Text = b.Bytes()
	return res
}

func describe(text string, present bool) string {
	if !present {
		return "absent"
	}
	v := statusField(text, "Version")
	if v == "" {
		v = statusField(text, "V") // apk
	}
	st := statusField(text, "Status")
	switch {
	case v != "" && st != "":
		return v + ", " + st
	case v != "":
		return v
	}
	return st
}
