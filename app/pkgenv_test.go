package app

import (
	"testing"

	"github.com/ovpkg/ovpkg/pkgflow"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

// The summary's size never says "(0 B)" for a change that took space: an
// upgrade's installed-size change is zero or negative when the new
// versions are no larger, but its layer holds them whole (issue 8: the
// upgrade summary clamped the size at 0).
func TestSizeNote(t *testing.T) {
	for _, c := range []struct {
		install, card int64
		want          string
	}{
		{0, 1 << 20, " (1.0 MiB on the card)"},
		{-3072, 1 << 20, " (-3.0 KiB installed size, 1.0 MiB on the card)"},
		{204800, 215040, " (+200.0 KiB installed size, 210.0 KiB on the card)"},
		{204800, -1, " (+200.0 KiB installed size)"},
		{0, -1, ""},
	} {
		res := &pkgflow.Result{Plan: &pkgmgr.Plan{InstallSize: c.install}, CardBytes: c.card}
		if got := sizeNote(res); got != c.want {
			t.Errorf("install %d, card %d: %q, want %q", c.install, c.card, got, c.want)
		}
	}
	if got := sizeNote(&pkgflow.Result{CardBytes: -1}); got != "" {
		t.Errorf("no plan, nothing known: %q", got)
	}
}
