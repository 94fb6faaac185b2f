package merge

import (
	"fmt"
	"strings"
)

// Conflict is a place where both sides changed the same thing differently.
type Conflict struct {
	Key    string // stanza/entry key, or "lines A-B" for line merges
	Reason string
}

func (c Conflict) String() string { return c.Key + ": " + c.Reason }

// Result is a merge's outcome. Text is only meaningful without Conflicts.
type Result struct {
	Text      []byte
	Conflicts []Conflict
	Notes     []string // resolutions by rule worth telling the user
}

// Clean reports whether the merge has no conflicts.
func (r *Result) Clean() bool { return len(r.Conflicts) == 0 }

// ConflictError lists a merge's conflicts for one file.
type ConflictError struct {
	File      string
	Conflicts []Conflict
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d conflict(s) where both the base and the card changed the same thing", e.File, len(e.Conflicts))
	for _, c := range e.Conflicts {
		b.WriteString("; " + c.String())
	}
	return b.String()
}

// Kind names a merger.
type Kind int

const (
	KindLines Kind = iota
	KindStatus
	KindEntries
)

func (k Kind) String() string {
	switch k {
	case KindStatus:
		return "status"
	case KindEntries:
		return "entries"
	}
	return "lines"
}

// KindFor chooses the merger for a path relative to the root ("etc/passwd").
func KindFor(rel string) Kind {
	rel = strings.TrimPrefix(rel, "/")
	switch rel {
	case "var/lib/dpkg/status", "usr/lib/opkg/status", "var/lib/opkg/status", "lib/apk/db/installed":
		return KindStatus
	case "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow":
		return KindEntries
	}
	return KindLines
}

// File merges old, new (the base's two versions) and card with the merger
// KindFor(rel) chooses.
func File(rel string, old, new, card []byte) Result {
	switch KindFor(rel) {
	case KindStatus:
		return Status(old, new, card)
	case KindEntries:
		return Entries(rel, old, new, card)
	}
	return Lines(old, new, card)
}

// pick3 is the three-way rule for one keyed item. present flags say whether
// the item exists on that side. It returns the chosen side ("new", "card"
// or "" when both changed differently) .
func pick3(o, n, c string, po, pn, pc bool) (side string) {
	eq := func(a string, pa bool, b string, pb bool) bool { return pa == pb && (!pa || a == b) }
	switch {
	case eq(n, pn, c, pc):
		return "card"
	case eq(o, po, n, pn):
		return "card"
	case eq(o, po, c, pc):
		return "new"
	}
	return ""
}
