#!/bin/bash
# The seed workflow on a scratch card: mkoverlay, ovmount over the real /,
# a file written under /usr/local lands on the card, eject, the base is
# unchanged, ovmount brings it back, eject again.
#
# Run it with `make demo`, which does
#     unshare --mount --propagation private -- bash scripts/demo.sh
# so every mount stays in a private mount namespace and disappears with it.
# (The product itself mounts system-wide; the namespace is the demo's.)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$PATH"
command -v ovmount >/dev/null || { echo "demo: run 'make build' first" >&2; exit 1; }
if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
	echo "demo: refusing to run in the host's mount namespace; use 'make demo'" >&2
	exit 2
fi
[ "$(id -u)" = 0 ] || { echo "demo: needs root (loop devices, mounts)" >&2; exit 1; }

D=$(mktemp -d /tmp/ovpkg-demo.XXXXXX)
F=/usr/local/ovpkg-demo-$$.txt
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
say() { printf '# %s\n' "$*"; }
cleanup() {
	# Never remove a directory that is still a mount point.
	if [ -e /run/ovpkg/mounts.json ]; then (cd / && eject >/dev/null 2>&1) || true; fi
	if awk -v d="$D/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		echo "demo: mounts left under $D; not removing it" >&2
		return
	fi
	rm -rf "$D"
}
trap cleanup EXIT

# A private /run/ovpkg (mount record and lock) so the host's is untouched.
mkdir -p /run/ovpkg
mount -t tmpfs -o mode=0700,size=4m ovpkg-demo /run/ovpkg

export OVPKG_CONFIG=$D/ovpkg.conf
say "scratch directory $D; config $OVPKG_CONFIG"
step mkoverlay 128 "$D/card.img"
# Mount the card inside the scratch directory instead of /overlay, so the
# demo creates nothing on the host's root filesystem.
echo "MOUNTPOINT=$D/overlay" >>"$OVPKG_CONFIG"
step cat "$OVPKG_CONFIG"

step ovmount
step ovmount # idempotent: says so and changes nothing
say "overlays now mounted:"
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "overlay" && $(i+2) == "ovpkg") print "  " $5; break } }' /proc/self/mountinfo

say "write a file under /usr/local: it lands on the card"
echo "hello from the card ($(date -u +%FT%TZ))" >"$F"
step cat "$F"
step ls -l "$D/overlay/ovpkg/layers/0001/tree$F"

say "build a small package with dpkg-deb and install it onto the card"
P=$D/pkg
mkdir -p "$P/DEBIAN" "$P/usr/bin"
cat >"$P/DEBIAN/control" <<CTRL
Package: ovpkg-demo
Version: 1.0
Architecture: all
Maintainer: ovpkg demo <demo@ovpkg.invalid>
Installed-Size: 1
Description: ovpkg demo program
 Prints where it runs from.
CTRL
printf '#!/bin/sh\necho "ovpkg-demo: running from $0, installed on the card"\n' >"$P/usr/bin/ovpkg-demo"
chmod 0755 "$P/usr/bin/ovpkg-demo"
dpkg-deb --root-owner-group -Zgzip --build "$P" "$D/ovpkg-demo_1.0_all.deb" >/dev/null
base_status=$(sha256sum </var/lib/dpkg/status)   # the base's, seen through the overlay before any change
step ovpkg install -y "$D/ovpkg-demo_1.0_all.deb"
step ovpkg-demo
step ovpkg list
say "the install was a transaction: its files sit in a layer of their own on the card"
step find "$D/overlay/ovpkg/layers" -path '*/usr/bin/ovpkg-demo'
step ovpkg history

step eject
if [ -e "$F" ]; then
	echo "demo: FAILED: $F still visible after eject" >&2
	exit 1
fi
say "after eject, $F is gone: the base /usr/local was never changed"
hash -r
if [ -e /usr/bin/ovpkg-demo ] || dpkg-query -W ovpkg-demo >/dev/null 2>&1; then
	echo "demo: FAILED: the package is still visible after eject" >&2
	exit 1
fi
[ "$(sha256sum </var/lib/dpkg/status)" = "$base_status" ] || { echo "demo: FAILED: base dpkg status changed" >&2; exit 1; }
say "the package is gone too, and the base's /var/lib/dpkg/status is byte-for-byte what it was"
step losetup -j "$D/card.img"
say "(no loop device left)"

step ovmount
say "mounted again: the file is back from the card"
step cat "$F"
step ovpkg-demo
say "roll the install back, live: its layer is dropped"
step ovpkg rollback
hash -r
if command -v ovpkg-demo >/dev/null; then echo "demo: FAILED: ovpkg-demo still there after rollback" >&2; exit 1; fi
say "ovpkg-demo is gone; the /usr/local file (written outside any transaction) stays"
step rm "$F"
step eject
say "demo done; scratch directory removed"
