package app_test

import (
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/owrttest"
)

// fakeWget stands in for the wget opkg runs (`wget -q [--timeout N] -O
// FILE URL`) for a feed at http://feeds.test/: it copies the file from
// /feeds and logs every download in /tmp/wget.log. No network.
const fakeWget = `#!/bin/sh
out=; url=
while [ $# -gt 0 ]; do
  case $1 in
    -O) out=$2; shift;;
    --timeout) shift;;
    -*|on) ;;
    *) url=$1;;
  esac
  shift
done
echo "$url" >> /tmp/wget.log
exec cp "/feeds/${url#http://feeds.test/}" "$out"
`

// opkg downloads each package once per install, although the plan (`opkg
// --noaction install`) downloads the whole closure: it fills opkg's cache
// in the archive directory and the job takes the packages from there
// (checked against the package list's checksums). The cache is the verb's
// download: deleted after it, kept with KEEP_ARCHIVES=yes (then the next
// install downloads nothing).
func TestOpenWrtOpkgDownloadsOnce(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true})
	helloFeed(t, r)
	res := r.Run(t, `
for d in /usr/sbin /usr/bin /sbin /bin; do rm -f $d/wget; done
cat > /usr/bin/wget <<'EOF'
`+fakeWget+`EOF
chmod 755 /usr/bin/wget
sed -i 's|file:///feeds/|http://feeds.test/|' /etc/opkg/customfeeds.conf
opkg update >/dev/null
grep -q Packages.gz /tmp/wget.log && echo LISTS-OVER-HTTP
: > /tmp/wget.log
mkoverlay 64 /mnt/card.img >/dev/null
ovmount >/dev/null
ovpkg install -y hello >/dev/null
echo "RUN: $(hello)"
echo "HELLO-DOWNLOADS=$(grep -c '/hello_' /tmp/wget.log) LIBFOO-DOWNLOADS=$(grep -c '/libfoo_' /tmp/wget.log)"
ls /overlay/ovpkg/cache/archives | grep -q ipk || echo ARCHIVES-DELETED
ovpkg remove -y hello libfoo >/dev/null
echo KEEP_ARCHIVES=yes >> /etc/ovpkg.conf
: > /tmp/wget.log
ovpkg install -y hello >/dev/null
ls /overlay/ovpkg/cache/archives | grep -c ipk | sed 's/^/KEPT=/'
ovpkg remove -y hello libfoo >/dev/null
: > /tmp/wget.log
ovpkg install -y hello >/dev/null
echo "RUN2: $(hello)"
echo "AGAIN-DOWNLOADS=$(grep -c ipk /tmp/wget.log)"
ovpkg eject >/dev/null
`)
	if res.Code != 0 {
		t.Fatalf("script failed: %s", res)
	}
	wantAll(t, res, "LISTS-OVER-HTTP", "RUN: hello from the card", "HELLO-DOWNLOADS=1 LIBFOO-DOWNLOADS=1",
		"ARCHIVES-DELETED", "KEPT=2", "RUN2: hello from the card", "AGAIN-DOWNLOADS=0")
	if strings.Contains(res.Stdout+res.Stderr, "Removing") && strings.Contains(res.Stdout+res.Stderr, "incorrect checksum") {
		t.Errorf("opkg found a cached package with a wrong checksum: %s", res)
	}
}
