package pkgmgr

import "sort"

// Where says where an installed package's files live.
type Where string

const (
	OnCard      Where = "card"        // installed by ovpkg: absent from the base
	CardUpgrade Where = "card-update" // in the base at another version; the card's version wins
	InBase      Where = "base"        // in the base, untouched by the card
	HiddenBase  Where = "removed"     // in the base, removed through the overlay (whiteouts hide it)
	BaseChanged Where = "base-drift"  // the base changed this package after the card copied the database
)

// Entry is one row of `ovpkg list`.
type Entry struct {
	Package
	Where       Where  `json:"where"`
	BaseVersion string `json:"base_version,omitempty"`
}

// Classify compares the merged view of the package database (what the
// system sees: the card's copy when the card has one, else the base's)
// with the base's own database and says where each package lives.
// cardHasCopy is false when the card never wrote the database; then
// everything is in the base.
//
// A base package missing from or different in the card's copy is either
// removed/upgraded through the overlay, or changed in the base after the
// card copied the database; baseSnapshot (the base packages at the time
// ovpkg last wrote the card, nil if unknown) tells the two apart.
func Classify(merged, base []Package, cardHasCopy bool, baseSnapshot []Package) []Entry {
	bix := NewIndex(base)
	var six Index
	if baseSnapshot != nil {
		six = NewIndex(baseSnapshot)
	}
	var out []Entry
	seen := map[string]bool{}
	for _, p := range merged {
		if !p.Installed() {
			continue
		}
		seen[p.Key()] = true
		e := Entry{Package: p, Where: InBase}
		if cardHasCopy {
			b, ok := bix.Lookup(p.Key())
			switch {
			case !ok || !b.Installed():
				e.Where = OnCard
			case b.Version != p.Version:
				e.BaseVersion = b.Version
				e.Where = CardUpgrade
				if six != nil {
					if s, ok := six.Lookup(p.Key()); ok && s.Version == p.Version {
						e.Where = BaseChanged // card copy = old base; the base moved on
					}
				}
			}
		}
		out = append(out, e)
	}
	if cardHasCopy {
		for _, b := range base {
			if !b.Installed() || seen[b.Key()] {
				continue
			}
			e := Entry{Package: b, Where: HiddenBase, BaseVersion: b.Version}
			if six != nil {
				if _, ok := six.Lookup(b.Key()); !ok {
					e.Where = BaseChanged // installed in the base after the card copied the database
				}
			}
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}
