package app_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/pkgmgr/debtest"
)

// An upgrade of a package on the card frees nothing: it runs in a new
// transaction layer and the old version's files stay in the layer below
// until `ovpkg commit`. The space check counts the new version whole, so
// an upgrade that does not fit is refused before anything runs (it used
// to subtract the old version's size, pass, and fill the card). The same
// for a remove's message: the space comes back only once committed.
func TestPkgE2EUpgradeOnCardNeedsWholeSize(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	dir := t.TempDir()
	blob := map[string]debtest.File{"usr/share/" + p + "/blob": {Size: 24 << 20}}
	v1 := debtest.Build(t, dir, debtest.Spec{Name: p, Version: "1.0", Files: blob})
	v2 := debtest.Build(t, dir, debtest.Spec{Name: p, Version: "2.0", Files: blob})
	r, _ := pkgRun(t, 40, fmt.Sprintf(`
set +e
ovmount >/dev/null
ovpkg install -y %[1]s; echo "V1=$?"
ovpkg install -y %[2]s; echo "V2=$?"
dpkg-query -W -f='${Version}\n' %[3]s
dpkg --audit && echo AUDIT-CLEAN
ovpkg remove -y %[3]s; echo "REMOVE=$?"
ovpkg commit >/dev/null; echo "COMMIT=$?"
eject >/dev/null && echo EJECTED
baseSame && echo BASE-SAME
`, v1, v2, p))
	wantOut(t, r, "V1=0", "V2=1", "not enough space on the card", "nothing was changed", "AUDIT-CLEAN", "REMOVE=0",
		"of the card only once committed", "COMMIT=0", "EJECTED", "BASE-SAME")
	if s := r.Stdout + r.Stderr; strings.Contains(s, "card filled up") {
		t.Errorf("the upgrade passed the space check and filled the card:\n%s", r)
	}
	if !strings.Contains(r.Stdout, "\n1.0\n") {
		t.Errorf("version 1.0 not kept after the refused upgrade:\n%s", r)
	}
}
