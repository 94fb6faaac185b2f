package mountset

import (
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/mount"
)

// A detached overlay whose device number a mounted filesystem now has was
// freed (numbers are unique among live filesystems); one nobody holds is
// gone too. Both are pruned; the record says it changed.
func TestPruneDetachedForgetsFreedOnes(t *testing.T) {
	tab, err := mount.Self()
	if err != nil {
		t.Fatal(err)
	}
	inUse := mount.Dev(tab[0])
	r := &Record{Detached: []DetachedOverlay{
		{Target: "/usr", Dev: inUse, Upper: "/c/ovpkg/layers/0003/tree/usr", Layers: []string{"0001", "0003"}},
		{Target: "/etc", Dev: 1<<40 | 12345, Upper: "/c/ovpkg/layers/0003/tree/etc", Layers: []string{"0001", "0003"}, MntID: 1 << 62},
	}}
	if !r.LayerInUse("0003") || r.LayerInUse("0001") || !r.UpperInUse("/c/ovpkg/layers/0003/tree/usr/") {
		t.Fatalf("LayerInUse/UpperInUse wrong for %+v", r.Detached)
	}
	still, changed, err := PruneDetached("", tab, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(still) != 0 || !changed || len(r.Detached) != 0 {
		t.Fatalf("still %v changed %v left %v", still, changed, r.Detached)
	}
	if r.LayerInUse("0003") {
		t.Fatal("layer still in use after pruning")
	}
	still, changed, _ = PruneDetached("", tab, r)
	if len(still) != 0 || changed {
		t.Fatalf("empty list: still %v changed %v", still, changed)
	}
}

func TestLingeringString(t *testing.T) {
	one := Lingering{DetachedOverlay: DetachedOverlay{Target: "/usr"}, Holders: []busy.Holder{{PID: 12, Command: "bash", Use: "exe"}, {PID: 12, Command: "bash", Use: "mmap"}}}
	if got, want := one.String(), "the old overlay of /usr stays in use by PID 12 (bash) until it exits"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	two := Lingering{DetachedOverlay: DetachedOverlay{Target: "/usr, /etc"}, Holders: []busy.Holder{{PID: 12, Command: "bash"}, {PID: 13, Command: "less"}}}
	if got := two.String(); !strings.Contains(got, "old overlays of /usr, /etc stay in use by PID 12 (bash), PID 13 (less) until they exit") {
		t.Fatalf("got %q", got)
	}
	err := lingeringError([]Lingering{one})
	if !strings.Contains(err.Error(), "the old overlay of /usr (detached by a restack while in use; it keeps the card busy) is in use by 1 process;") ||
		!strings.HasSuffix(err.Error(), ": PID 12 (bash): exe, mapping") ||
		!strings.Contains(err.Error(), "nothing was unmounted") {
		t.Fatalf("eject's refusal: %v", err)
	}
}
