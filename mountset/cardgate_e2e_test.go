package mountset_test

import (
	"testing"
)

// Issue 9, Why 4: a card image an ordinary user can write is refused
// before anything is attached, naming the image and the fix; the image is
// left as it was.
func TestE2EImageNotRootOnlyRefused(t *testing.T) {
	for _, c := range []struct {
		name, spoil string
		msgs        []string
	}{
		{"user-owned image", `chown 1000:1000 $D/card.img`,
			[]string{"image " + "$D/card.img: is owned by uid 1000, not root", "setuid-root", "run: chown root:root"}},
		{"group-writable image", `chmod 664 $D/card.img`,
			[]string{"writable by group or others (mode 0664)", "run: chmod go-w"}},
		{"image in a world-writable directory", `mkdir -m 777 $D/cards; mv $D/card.img $D/cards/; sed -i "s|^SD_ROOTFS=.*|SD_ROOTFS=$D/cards/card.img|" $OVPKG_CONFIG`,
			[]string{"cards: directory writable by group or others (mode 0777) without the sticky bit", "chmod go-w"}},
		{"image in a user-owned directory", `mkdir $D/cards; mv $D/card.img $D/cards/; chown 1000 $D/cards; sed -i "s|^SD_ROOTFS=.*|SD_ROOTFS=$D/cards/card.img|" $OVPKG_CONFIG`,
			[]string{"cards: directory owned by uid 1000, not root"}},
		{"image a symbolic link", `mv $D/card.img $D/real.img; ln -s $D/real.img $D/card.img`,
			[]string{"is a symbolic link; set SD_ROOTFS to the image file itself"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, `
S0=$(find $D -maxdepth 2 -type f -name '*.img' -exec cat {} + | md5sum)
`+c.spoil+`
set +e
ovmount --root $R 2>$D/err; echo "exit $?"
set -e
echo "overlays: $(overlays)"
echo "lines: $(wc -l < $D/err)"
sed "s|$D|\$D|g" $D/err
[ "$(find $D -maxdepth 2 -type f -name '*.img' -exec cat {} + | md5sum)" = "$S0" ] && echo IMAGE-UNCHANGED
checkClean
`)
			if r.Code != 0 {
				t.Fatalf("%s", r)
			}
			want(t, r, append([]string{"exit 1", "overlays: 0", "lines: 1", "IMAGE-UNCHANGED", "CLEAN"}, c.msgs...)...)
		})
	}
}
