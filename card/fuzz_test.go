package card

import (
	"strings"
	"testing"
)

// FuzzParseStack: whatever a card's stack file holds, a stack that parses
// names only valid, distinct layer ids that stay one path component.
func FuzzParseStack(f *testing.F) {
	for _, s := range []string{"0001\n", "0001\n0002\n# c\n\n", "../x\n", "0001\n0001\n", "", "a/b\n", "\x00\n", strings.Repeat("0001\n", 3)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := ParseStackStrict(b)
		if err != nil {
			return
		}
		if len(ids) == 0 || len(ids) > MaxLayers {
			t.Fatalf("%d ids accepted", len(ids))
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] || id == "." || id == ".." || strings.ContainsAny(id, "/\x00 \t\n") || len(id) > 64 {
				t.Fatalf("bad id %q accepted", id)
			}
			if New("/c").LayerDir(id) != "/c/ovpkg/layers/"+id {
				t.Fatalf("id %q leaves the layers directory", id)
			}
			seen[id] = true
		}
	})
}

// FuzzParseFormat: only "ovpkg-card N" with a small positive N parses.
func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"ovpkg-card 1\n", "ovpkg-card 2", "ovpkg-card -1", "ovpkg-card 99999999999999999999", "\x7fELF", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseFormat(b)
		if err != nil {
			return
		}
		if v < 1 || v > 999999 || !strings.HasPrefix(strings.TrimSpace(string(b)), formatMagic) {
			t.Fatalf("%q parsed as version %d", b, v)
		}
	})
}
