package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// An image only root can change opens; one a user owns, one writable by
// group or others, one in a directory others can write, and a symbolic
// link are refused with ErrNotRootOnly and a one-line message naming the
// fix. The checks are on the descriptor (fstat), so chown/chmod are
// needed: root only.
func TestOpenOwned(t *testing.T) {
	nstest.RequireRoot(t)
	for _, c := range []struct {
		name  string
		spoil func(dir, img string) string // returns the path to open
		want  []string                     // "" = opens
	}{
		{"root-only", func(dir, img string) string { return img }, nil},
		{"root-owned 0644 in a sticky world-writable dir", func(dir, img string) string {
			unix.Chmod(dir, 0o1777)
			return img
		}, nil},
		{"user-owned", func(dir, img string) string { os.Chown(img, 1000, 1000); return img },
			[]string{"is owned by uid 1000, not root", "setuid-root", "run: chown root:root " + "IMG"}},
		{"group-writable", func(dir, img string) string { os.Chmod(img, 0o664); return img },
			[]string{"writable by group or others (mode 0664)", "run: chmod go-w IMG"}},
		{"world-writable", func(dir, img string) string { os.Chmod(img, 0o646); return img },
			[]string{"writable by group or others (mode 0646)"}},
		{"world-writable directory", func(dir, img string) string { os.Chmod(dir, 0o777); return img },
			[]string{"directory writable by group or others (mode 0777) without the sticky bit", "chmod go-w DIR"}},
		{"user-owned directory", func(dir, img string) string { os.Chown(dir, 1000, 1000); return img },
			[]string{"directory owned by uid 1000, not root"}},
		{"symbolic link", func(dir, img string) string {
			l := filepath.Join(dir, "link.img")
			os.Symlink(img, l)
			return l
		}, []string{"is a symbolic link; set SD_ROOTFS to the image file itself"}},
		{"user-owned file in a sticky directory", func(dir, img string) string {
			unix.Chmod(dir, 0o1777)
			os.Chown(img, 1000, 1000)
			return img
		}, []string{"is owned by uid 1000"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := t.TempDir()
			os.Chmod(top, 0o755)
			dir := filepath.Join(top, "cards")
			os.Mkdir(dir, 0o755)
			img := filepath.Join(dir, "card.img")
			if err := os.WriteFile(img, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := c.spoil(dir, img)
			f, err := OpenOwned(p)
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused a root-only image: %v", err)
				}
				f.Close()
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("opened %s", p)
			}
			if !errors.Is(err, ErrNotRootOnly) {
				t.Errorf("error does not wrap ErrNotRootOnly: %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "image "+p+": ") {
				t.Errorf("not one line naming the image: %q", msg)
			}
			for _, w := range c.want {
				w = strings.ReplaceAll(strings.ReplaceAll(w, "IMG", img), "DIR", dir)
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
		})
	}
}

// A missing image keeps ENOENT (the caller's message says to run
// mkoverlay).
func TestOpenOwnedMissing(t *testing.T) {
	_, err := OpenOwned(filepath.Join(t.TempDir(), "none.img"))
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrNotRootOnly) {
		t.Fatalf("got %v", err)
	}
}

// The fix for a FAT card names the mount options and, when found, where
// it is mounted.
func TestFATFix(t *testing.T) {
	msg := fatFix(0)
	if !strings.Contains(msg, "unmount the card and mount it again as root with -o uid=0,gid=0,fmask=0077,dmask=0077") {
		t.Errorf("fix %q", msg)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc", &st); err != nil {
		t.Fatal(err)
	}
	if mp := mountPointOf(uint64(st.Dev)); mp != "/proc" {
		t.Errorf("mount point of /proc's device: %q", mp)
	}
	if got := unescapeMount(`/media/u/SD\040CARD`); got != "/media/u/SD CARD" {
		t.Errorf("unescape: %q", got)
	}
}
