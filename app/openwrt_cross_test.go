package app_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/internal/owrttest"
)

// The mipsle and armv7 builds really run, under qemu-user started
// explicitly (binfmt_misc is left alone), in the busybox root: mkoverlay
// (checked by the host's e2fsck), ovmount, a file written through the
// overlay, eject (gone), ovmount (back), uovmount and eject. Verbs that
// re-execute ovpkg (package verbs, status, history: /proc/self/exe) need
// the kernel to run the foreign binary itself, i.e. a registered binfmt
// handler, which this test may not install: see docs/openwrt.md.
func TestOpenWrtCrossBuildsRun(t *testing.T) {
	for _, c := range owrttest.Crosses {
		t.Run(c.Name, func(t *testing.T) {
			r := owrttest.NewRoot(t, owrttest.Options{Opkg: true})
			q := r.InstallCross(t, c)
			res := r.Run(t, `
Q="`+q+`"
$Q mkoverlay 64 /mnt/card.img
$Q ovmount
echo "OVERLAYS $(grep -c ' - overlay ' /proc/self/mountinfo)"
echo "written by busybox through the `+c.Name+` build's overlay" > /etc/cross-test
$Q eject
test -e /etc/cross-test || echo GONE
$Q ovmount >/dev/null
cat /etc/cross-test
$Q uovmount
test -e /etc/cross-test || echo GONE-AGAIN
awk '$5 == "/overlay" { found = 1 } END { exit !found }' /proc/self/mountinfo && echo CARD-STILL-MOUNTED
$Q eject
$Q --version
`)
			if res.Code != 0 {
				t.Fatalf("%s build under %s: %s", c.Name, c.Qemu, res)
			}
			wantAll(t, res, "OVERLAYS 5", "card is safe to remove", "GONE\n", "written by busybox through the "+c.Name, "GONE-AGAIN", "CARD-STILL-MOUNTED")
			nstest.Need(t, "e2fsck")
			img := filepath.Join(r.Dir, "mnt", "card.img")
			out, err := exec.Command("e2fsck", "-fn", img+"?offset=1048576").CombinedOutput()
			if err != nil {
				t.Errorf("e2fsck of the card the %s build made and used: %v\n%s", c.Name, err, out)
			}
			if !strings.Contains(string(out), "Pass 5") {
				t.Errorf("e2fsck did not check: %s", out)
			}
		})
	}
}
