#!/bin/sh
# packaging/build.sh deb|ipk|apk
#
# Builds packages of ovpkg from the cross builds `make cross` leaves in
# $DIST/linux-<name>/ (sbin/ovpkg, share/man/man8), one per architecture:
#   deb  $OUT/deb/ovpkg_<version>_<debian arch>.deb        (dpkg-deb)
#   ipk  $OUT/ipk/ovpkg_<version>-1_<openwrt arch>.ipk     (opkg-lede's format: tar.gz)
#   apk  $OUT/apk/<openwrt arch>/ovpkg-<version>-r0.apk    (the real `apk mkpkg`)
# `make deb`, `make ipk`, `make apk` run it; docs/packaging.md says what is
# in each package and why.
#
# Environment:
#   PKG_VERSION      package version (required; digits and dots: 0.0.123)
#   DIST             cross builds (default dist); ARCHES: names to package
#                    (default: every $DIST/linux-*)
#   OUT              output directory (default $DIST/packages)
#   COMPLETION       the bash completion script (deb; default completion/ovpkg)
#   APK              apk-tools 3 binary (apk)
#   APK_SIGN_KEY     private key to sign the .apk with (default: unsigned)
#   OWRT_ARCH_<name> OpenWrt architecture for a build (default: see owrt_arch)
#   OWRT_DEPENDS     dependencies of the OpenWrt packages (default: kmod-loop kmod-fs-ext4)
#   MAINTAINER       default "ovpkg developers <ovpkg@localhost>"
#   SOURCE_DATE_EPOCH  timestamps in the packages (default: the last commit's)
set -eu

kind=${1:?usage: build.sh deb|ipk|apk}
here=$(cd "$(dirname "$0")" && pwd)
DIST=${DIST:-dist}
OUT=${OUT:-$DIST/packages}
VERSION=${PKG_VERSION:?PKG_VERSION is not set}
COMPLETION=${COMPLETION:-completion/ovpkg}
MAINTAINER=${MAINTAINER:-ovpkg developers <ovpkg@localhost>}
OWRT_DEPENDS=${OWRT_DEPENDS-kmod-loop kmod-fs-ext4}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
ARCHES=${ARCHES:-$(ls "$DIST" 2>/dev/null | sed -n 's/^linux-//p')}
[ -n "$ARCHES" ] || { echo "build.sh: no builds in $DIST/linux-* (run make cross)" >&2; exit 1; }
case $VERSION in
*[!0-9.]* | .* | *. | "") echo "build.sh: PKG_VERSION=$VERSION: want digits and dots (apk and dpkg both order those)" >&2; exit 1 ;;
esac

DESCRIPTION="packages on an overlay card image for small or read-only roots"
LONG="ovpkg keeps an ext2 image file on an SD card or USB stick, loop-mounts it
and stacks an overlayfs over each root directory, so that packages installed
with the normal package manager land on the card and appear in place while
the base root stays untouched. mkoverlay makes the card, ovmount mounts it
(also at boot), ovpkg install/remove/upgrade run the package manager as
transactions, ovpkg eject makes the card safe to pull."

deb_arch() {
	case $1 in
	amd64) echo amd64 ;; arm64) echo arm64 ;; armv5) echo armel ;; armv7) echo armhf ;;
	mipsle) echo mipsel ;; mips) echo mips ;; 386) echo i386 ;;
	*) echo "build.sh: no Debian architecture for $1" >&2; return 1 ;;
	esac
}

# OpenWrt names architectures by CPU (mipsel_24kc, arm_cortex-a7_neon-vfpv4):
# the defaults are the most common boards of each Go target; set
# OWRT_ARCH_<name> for yours (`opkg print-architecture`, `cat /etc/apk/arch`).
owrt_arch() {
	eval "v=\${OWRT_ARCH_$1:-}"
	if [ -n "$v" ]; then echo "$v"; return; fi
	case $1 in
	amd64) echo x86_64 ;; arm64) echo aarch64_generic ;; armv5) echo arm_arm926ej-s ;;
	armv7) echo arm_cortex-a7_neon-vfpv4 ;; mipsle) echo mipsel_24kc ;; mips) echo mips_24kc ;;
	386) echo i386_pentium4 ;;
	*) echo "build.sh: no OpenWrt architecture for $1 (set OWRT_ARCH_$1)" >&2; return 1 ;;
	esac
}

# names ARCH: the tool names `make cross` linked to the binary (TOOLS),
# but eject: Debian has util-linux's eject, OpenWrt packages make one in
# postinst only where the system has none; `ovpkg eject` always works.
names() {
	for l in "$DIST/linux-$1/sbin/"*; do
		n=${l##*/}
		[ -L "$l" ] && [ "$n" != eject ] && echo "$n"
	done
}

# manpages ARCH: the commands with a man page (the command-line tools:
# init-overlay, started by the kernel, has none), but eject.
manpages() {
	for m in "$DIST/linux-$1/share/man/man8/"*.8; do
		n=${m##*/}
		n=${n%.8}
		[ "$n" != eject ] && echo "$n"
	done
}

# stage_bin DIR ARCH: the binary and its names in DIR/usr/sbin.
stage_bin() {
	bin="$DIST/linux-$2/sbin/ovpkg"
	[ -f "$bin" ] || { echo "build.sh: $bin missing (run make cross)" >&2; exit 1; }
	mkdir -p "$1/usr/sbin"
	cp "$bin" "$1/usr/sbin/ovpkg"
	chmod 0755 "$1/usr/sbin/ovpkg"
	for t in $(names "$2"); do ln -sf ovpkg "$1/usr/sbin/$t"; done
}

# sbin FILE: FILE with @SBINDIR@ (where the binary lives) filled in.
sbin() { sed "s#@SBINDIR@#/usr/sbin#g" "$1"; }

# bytes DIR: the size of the files in DIR (what opkg and apk count).
bytes() { find "$1" -type f -exec cat {} + | wc -c | tr -d ' '; }

# settle DIR: every timestamp SOURCE_DATE_EPOCH, so that builds repeat.
settle() { find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }

# tgz DIR FILE: a reproducible tar.gz of DIR's contents ("./..." names,
# owned by root), as opkg-build makes them.
tgz() {
	settle "$1"
	(cd "$1" && tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" -cf - .) | gzip -9n >"$2"
}

build_deb() {
	command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb is needed for deb" >&2; exit 1; }
	[ -f "$COMPLETION" ] || { echo "build.sh: $COMPLETION missing (run make completion)" >&2; exit 1; }
	a=$1 arch=$(deb_arch "$1")
	s="$tmp/deb-$a"
	stage_bin "$s" "$a"
	man="$DIST/linux-$a/share/man/man8"
	mkdir -p "$s/usr/share/man/man8"
	[ -f "$man/ovpkg.8" ] || { echo "build.sh: $man/ovpkg.8 missing (run make cross, which runs make man)" >&2; exit 1; }
	for m in $(manpages "$a"); do
		gzip -9n <"$man/$m.8" >"$s/usr/share/man/man8/$m.8.gz"
	done
	# Debian 12 keeps units in /lib (the /usr-merge moratorium).
	mkdir -p "$s/lib/systemd/system" "$s/etc/init.d" "$s/usr/share/bash-completion/completions" "$s/usr/share/doc/ovpkg" "$s/DEBIAN"
	for u in "$here"/systemd/*.service; do
		sbin "$u" >"$s/lib/systemd/system/${u##*/}"
	done
	: >"$s/DEBIAN/conffiles"
	for i in "$here"/sysvinit/*; do
		sbin "$i" >"$s/etc/init.d/${i##*/}"
		chmod 0755 "$s/etc/init.d/${i##*/}"
		echo "/etc/init.d/${i##*/}" >>"$s/DEBIAN/conffiles"
	done
	install -m 0644 "$COMPLETION" "$s/usr/share/bash-completion/completions/ovpkg"
	for t in $(manpages "$a"); do
		[ "$t" = ovpkg ] || ln -sf ovpkg "$s/usr/share/bash-completion/completions/$t"
	done
	install -m 0644 "$here/deb/copyright" "$s/usr/share/doc/ovpkg/copyright"
	{
		echo "ovpkg ($VERSION) unstable; urgency=medium"
		echo
		echo "  * Built from $(git describe --always --dirty 2>/dev/null || echo 'a source tree') by make deb."
		echo
		echo " -- $MAINTAINER  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
	} | gzip -9n >"$s/usr/share/doc/ovpkg/changelog.gz"
	install -m 0755 "$here/deb/postinst" "$here/deb/postrm" "$s/DEBIAN/"
	size=$(du -sk --apparent-size --exclude=DEBIAN "$s" | cut -f1)
	{
		echo "Package: ovpkg"
		echo "Version: $VERSION"
		echo "Architecture: $arch"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $size"
		echo "Recommends: e2fsprogs"
		echo "Section: admin"
		echo "Priority: optional"
		echo "Description: $DESCRIPTION"
		echo "$LONG" | sed 's/^/ /'
	} >"$s/DEBIAN/control"
	(cd "$s" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | LC_ALL=C sort | xargs md5sum) >"$s/DEBIAN/md5sums"
	chmod 0644 "$s/DEBIAN/control" "$s/DEBIAN/conffiles" "$s/DEBIAN/md5sums"
	settle "$s"
	mkdir -p "$OUT/deb"
	out="$OUT/deb/ovpkg_${VERSION}_$arch.deb"
	dpkg-deb --root-owner-group -Zxz --build "$s" "$out" >/dev/null
	echo "$out"
}

# stage_owrt DIR ARCH: what the OpenWrt packages install.
stage_owrt() {
	stage_bin "$1" "$2"
	mkdir -p "$1/etc/init.d"
	sbin "$here/openwrt/ovmount.init" >"$1/etc/init.d/ovmount"
	chmod 0755 "$1/etc/init.d/ovmount"
}

build_ipk() {
	a=$1 arch=$(owrt_arch "$1")
	s="$tmp/ipk-$a"
	stage_owrt "$s/data" "$a"
	mkdir -p "$s/control" "$s/pkg"
	{
		echo "Package: ovpkg"
		echo "Version: $VERSION-1"
		[ -z "$OWRT_DEPENDS" ] || echo "Depends: $(echo $OWRT_DEPENDS | sed 's/ /, /g')"
		echo "Source: ovpkg"
		echo "Section: utils"
		echo "Architecture: $arch"
		echo "Installed-Size: $(bytes "$s/data")"
		echo "Maintainer: $MAINTAINER"
		echo "Description: $DESCRIPTION"
		echo "$LONG" | sed 's/^/ /'
	} >"$s/control/control"
	install -m 0755 "$here/openwrt/postinst" "$here/openwrt/prerm" "$s/control/"
	tgz "$s/data" "$s/pkg/data.tar.gz"
	tgz "$s/control" "$s/pkg/control.tar.gz"
	echo 2.0 >"$s/pkg/debian-binary"
	mkdir -p "$OUT/ipk"
	out="$OUT/ipk/ovpkg_${VERSION}-1_$arch.ipk"
	# opkg-lede reads a tar.gz holding the three members, in this order.
	settle "$s/pkg"
	(cd "$s/pkg" && tar --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -9n >"$out"
	echo "$out"
}

build_apk() {
	[ -n "${APK:-}" ] && [ -x "$APK" ] || { echo "build.sh: set APK to apk-tools 3 (make test builds one into the test cache; see docs/packaging.md)" >&2; exit 1; }
	a=$1 arch=$(owrt_arch "$1")
	s="$tmp/apk-$a"
	stage_owrt "$s" "$a"
	settle "$s"
	mkdir -p "$OUT/apk/$arch"
	out="$OUT/apk/$arch/ovpkg-$VERSION-r0.apk"
	set -- --info name:ovpkg --info "version:$VERSION-r0" --info "arch:$arch" \
		--info "description:$DESCRIPTION" --info origin:ovpkg --info "maintainer:$MAINTAINER" \
		--files "$s" --script "post-install:$here/openwrt/postinst" --script "pre-deinstall:$here/openwrt/prerm" --output "$out"
	[ -z "$OWRT_DEPENDS" ] || set -- "$@" --info "depends:$OWRT_DEPENDS"
	[ -z "${APK_SIGN_KEY:-}" ] || set -- "$@" --sign-key "$APK_SIGN_KEY"
	# APK_CONFIG: this machine's /etc/apk/config must not apply.
	APK_CONFIG=/dev/null "$APK" mkpkg "$@"
	echo "$out"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ovpkg-packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for a in $ARCHES; do
	case $kind in
	deb) build_deb "$a" ;;
	ipk) build_ipk "$a" ;;
	apk) build_apk "$a" ;;
	*) echo "build.sh: unknown kind $kind (deb, ipk or apk)" >&2; exit 2 ;;
	esac
done
