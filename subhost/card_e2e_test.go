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
