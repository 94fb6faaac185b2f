package pkgmgr

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Field is one "Name: value" field of a control stanza. Value keeps
// continuation lines joined with "\n", each without its leading space.
type Field struct {
	Name, Value string
}

// Stanza is one paragraph of RFC 822-style control data (a dpkg or opkg
// status entry, a control file, apt-cache show output), fields in order.
type Stanza struct {
	Fields []Field
	Line   int // line number of the first field, for messages
}

// Get returns the value of the field named name (case-insensitive), or "".
func (s Stanza) Get(name string) string {
	for _, f := range s.Fields {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// SyntaxError is a malformed line in control data.
type SyntaxError struct {
	Source string
	Line   int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.Source, e.Line, e.Msg)
}

// ParseStanzas reads control data: stanzas separated by blank lines, each
// a list of "Name: value" fields, continuation lines starting with a space
// or a tab. source names r in errors. Lines starting with '#' are comments.
func ParseStanzas(source string, r io.Reader) ([]Stanza, error) {
	var out []Stanza
	var cur *Stanza
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			continue
		}
		if line[0] == '#' && cur == nil {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil || len(cur.Fields) == 0 {
				return out, &SyntaxError{source, n, "continuation line outside a field"}
			}
			f := &cur.Fields[len(cur.Fields)-1]
			f.Value += "\n" + line[1:]
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return out, &SyntaxError{source, n, fmt.Sprintf("not a field: %q", clip(line, 60))}
		}
		if cur == nil {
			cur = &Stanza{Line: n}
		}
		cur.Fields = append(cur.Fields, Field{Name: name, Value: strings.TrimSpace(value)})
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s: reading line %d: %w", source, n+1, err)
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
