package subhost_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/pkgmgr/debtest"
)

// A subhost started with --card sees what the card installed (a
// committed transaction layer and the live working layer), its own
// writes land in its UPPER and not on the card or the host, and once it
// is stopped the card ejects.
func TestCardSubhostSeesCard(t *testing.T) {
	nstest.Need(t, "dpkg-deb", "dpkg-query", "apt-get")
	n := names(1)[0]
	pfx := "ovsh" + n[1:5]
	debs := debtest.BuildStandard(t, t.TempDir(), pfx, 1<<20)
	_, app, _, _, _ := debtest.Names(pfx)
	r := hostScript(t, fmt.Sprintf(`
N=%s APP=%s
export DEBIAN_FRONTEND=noninteractive
export OVPKG_CONFIG=$T/ovpkg.conf
printf 'MOUNTPOINT=%%s\nOVERLAY_DIRS=usr etc var\n' $T/card > $OVPKG_CONFIG
mkoverlay 64 $T/card.img >/dev/null
ovmount >/dev/null
rm -f /usr/sbin/policy-rc.d
ovpkg install -y %s %s >/dev/null
echo card-working > /etc/$N-card-file
newhost $N
ovpkg subhost check --card $T/$N/$N.conf
ovpkg subhost start --card $T/$N/$N.conf
ovpkg subhost enter $N -- sh -c "echo in: \$($APP); cat /etc/$N-card-file; dpkg-query -W -f='\${Status}\n' $APP; echo sub > /etc/$N-sub-file; echo usr > /usr/$N-usr-file"
echo "upper etc: $(cat $T/$N/root/etc/$N-sub-file) usr: $(cat $T/$N/root/usr/$N-usr-file)"
[ -e /etc/$N-sub-file ] && echo "LEAKED to the host"
find $T/card -name "$N-sub-file" | grep . && echo "LEAKED to the card"
ovpkg subhost stop $N
leftovers $N
rm /etc/$N-card-file
eject >/dev/null && echo EJECTED
`, n, app, debs.Lib, debs.App))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	for _, want := range []string{"in: hello from " + app, "card-working", "install ok installed", "upper etc: sub usr: usr", "EJECTED"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.Stdout, "LEAKED") || strings.Contains(r.Stdout, "LEFT:") {
		t.Errorf("%s", r)
	}
}

// ovpkg try: install in a throwaway subhost (nothing on the live system
// changes), test it, commit it as a transaction (history shows it, the
// live system has it at once, rollback drops it); a second try is
// discarded and leaves nothing.
func TestTryInstallCommitDiscard(t *testing.T) {
	nstest.Need(t, "dpkg-deb", "dpkg-query", "apt-get")
	pfx := "ovtry" + names(1)[0][1:5]
	debs := debtest.BuildStandard(t, t.TempDir(), pfx, 1<<20)
	lib, app, _, conf, _ := debtest.Names(pfx)
	r := hostScript(t, fmt.Sprintf(`
APP=%s LIB=%s CONF=%s
export DEBIAN_FRONTEND=noninteractive
export OVPKG_CONFIG=$T/ovpkg.conf
printf 'MOUNTPOINT=%%s\nOVERLAY_DIRS=usr etc var\n' $T/card > $OVPKG_CONFIG
mkoverlay 64 $T/card.img >/dev/null
ovmount >/dev/null
rm -f /usr/sbin/policy-rc.d
sum0=$(sha256sum < /var/lib/dpkg/status)
hist0=$(ovpkg history | wc -l)
ovpkg try install -y %s %s
command -v $APP >/dev/null && echo "LIVE CHANGED before commit"
[ "$(sha256sum < /var/lib/dpkg/status)" = "$sum0" ] && echo "live status unchanged"
[ "$(ovpkg history | wc -l)" = "$hist0" ] && echo "history unchanged"
echo "in try: $(ovpkg try run $APP)"
ovpkg try run -- dpkg-query -W -f='${Status}\n' $APP
ovpkg subhost list
# A commit cut short (SIGKILL once the new layer is live) is undone by
# the next command; the try itself survives it and commits again.
OVPKG_TEST_CRASH_AT=begin-restacked ovpkg try commit || echo "crashed commit: $?"
ovpkg history >/dev/null
hash -r; command -v $APP >/dev/null && echo "LIVE CHANGED by a cut commit"
find $T/card/ovpkg/try/root -name $APP | grep -q . && echo "try survived the cut commit"
ovpkg try commit
echo "live: $($APP)"
dpkg-query -W -f='${Status}\n' $APP
ovpkg history
ovpkg rollback >/dev/null
hash -r; command -v $APP >/dev/null || echo "rolled back: gone"
ovpkg try install -y %s
ovpkg try discard
[ -e /etc/$CONF.conf ] && echo "LIVE CHANGED by a discarded try"
[ -e $T/card/ovpkg/try ] && echo "try dir LEFT"
ovpkg try run true 2>&1 || true
leftovers ovpkg-try
eject >/dev/null && echo EJECTED
`, app, lib, conf, debs.Lib, debs.App, debs.Conf))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	for _, want := range []string{"tried: install", "live status unchanged", "history unchanged", "in: ", "in try: hello from " + app,
		"install ok installed", "crashed commit: 137", "try survived the cut commit", "try committed as transaction",
		"live: hello from " + app, "try install", "rolled back: gone", "try discarded", "no try in progress", "EJECTED"} {
		if want == "in: " {
			continue
		}
		if !strings.Contains(r.Stdout+r.Stderr, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
	for _, bad := range []string{"LIVE CHANGED", "LEFT"} {
		if strings.Contains(r.Stdout, bad) {
			t.Errorf("%q:\n%s", bad, r)
		}
	}
}
