package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/owrttest"
	"github.com/ovpkg/ovpkg/pkgmgr/apktest"
)

// BenchmarkOpenWrtInstallApk: `ovpkg install -y` of a 50 MB .apk
// (incompressible payload), from a signed local repository (REPO) and as a
// local file ovpkg reads for its paths (FILE), in the busybox root with
// the real apk and a card mounted, against plain `apk add` of the same
// into the same root (through the same overlays), alternating, each
// followed by a remove. Reports ovpkg's own peak RSS (VmHWM of the ovpkg
// process, not apk's; target <= 16 MB: the device has 32 MB) and
// x-apk = ovpkg install time / apk add time.
func BenchmarkOpenWrtInstallApk(b *testing.B) {
	r := owrttest.NewRoot(b, owrttest.Options{Apk: true})
	key := apktest.NewKey(b, b.TempDir(), "bench")
	spec := apktest.Spec{Name: "big", Files: map[string]apktest.File{
		"usr/share/big/payload": {Size: 50 << 20}, "usr/bin/big": apktest.Program("big")}}
	apktest.NewRepo(b, r.PM.Apk, filepath.Join(r.Dir, "srv/repo"), &key, spec)
	local := filepath.Join(r.Dir, "root")
	if err := os.MkdirAll(local, 0o755); err != nil {
		b.Fatal(err)
	}
	apktest.Build(b, r.PM.Apk, local, &key, spec)
	apktest.InitRoot(b, r.PM.Apk, r.Dir, []string{"/srv/repo/packages.adb"}, key)
	script := fmt.Sprintf(`
mkoverlay 512 /mnt/card.img >/dev/null
ovmount >/dev/null
for i in $(seq %d); do
  echo STEP install-repo >&2
  time -f "TIME ovpkg-install-repo %%e" env OVPKG_TEST_REPORT_RSS=1 ovpkg install -y big >/dev/null
  echo STEP remove >&2
  OVPKG_TEST_REPORT_RSS=1 ovpkg remove -y big >/dev/null
  time -f "TIME apk-add-repo %%e" apk add big >/dev/null
  apk del big >/dev/null
  echo STEP install-file >&2
  time -f "TIME ovpkg-install-file %%e" env OVPKG_TEST_REPORT_RSS=1 ovpkg install -y /root/big-1.0-r1.apk >/dev/null
  echo STEP remove >&2
  OVPKG_TEST_REPORT_RSS=1 ovpkg remove -y big >/dev/null
  time -f "TIME apk-add-file %%e" apk add /root/big-1.0-r1.apk >/dev/null
  apk del big >/dev/null
done
ovpkg eject >/dev/null
`, b.N)
	b.ResetTimer()
	res := r.RunTimeout(b, 30*time.Minute, script)
	b.StopTimer()
	if res.Code != 0 {
		b.Fatalf("bench script: %s", res)
	}
	m := parseOwrt(res.Stdout + res.Stderr)
	or, ar := mean(m.time["ovpkg-install-repo"]), mean(m.time["apk-add-repo"])
	of, af := mean(m.time["ovpkg-install-file"]), mean(m.time["apk-add-file"])
	if or == 0 || ar == 0 || of == 0 || af == 0 || m.rss["install-repo"] == 0 || m.rss["install-file"] == 0 {
		b.Fatalf("no figures: %s", res)
	}
	b.ReportMetric(or*1000, "ovpkg-install-repo-ms/op")
	b.ReportMetric(or/ar, "x-apk-repo")
	b.ReportMetric(of*1000, "ovpkg-install-file-ms/op")
	b.ReportMetric(of/af, "x-apk-file")
	b.ReportMetric(m.rss["install-repo"]/1024, "install-repo-peak-RSS-MB")
	b.ReportMetric(m.rss["install-file"]/1024, "install-file-peak-RSS-MB")
	b.ReportMetric(m.rss["remove"]/1024, "remove-peak-RSS-MB")
}
