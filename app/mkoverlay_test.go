package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/internal/nstest"
)

func runTool(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Run(args, &o, &e)
	return code, o.String(), e.String()
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return strings.Join(n, " ")
}

func TestMkoverlayCreatesAndRecords(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ovpkg.conf")
	os.WriteFile(conf, []byte("# mine\nMOUNTPOINT=/overlay\nSD_ROOTFS=/old/card.img\nOTHER='keep me'\n"), 0o600)
	img := filepath.Join(dir, "card.img")
	// Options may come before, between and after the arguments.
	code, out, errs := runTool("mkoverlay", "--config", conf, "64M", "--label", "mycard", img, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res struct {
		image.Info
		Config string `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if res.Path != img || res.Size != 64*image.MiB || res.Table != "dos" || res.FSType != "ext2" || res.Label != "mycard" ||
		!res.Clean || res.Config != conf || res.DiskUsage <= 0 {
		t.Errorf("result %+v", res)
	}
	info, err := image.Inspect(img)
	if err != nil || info.UUID != res.UUID {
		t.Fatalf("Inspect: %+v, %v", info, err)
	}
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cfg.Get(config.KeyImage); v != img {
		t.Errorf("SD_ROOTFS = %q", v)
	}
	if v, _ := cfg.Get(config.KeyUUID); v != info.UUID {
		t.Errorf("SD_UUID = %q, want %q", v, info.UUID)
	}
	b, _ := os.ReadFile(conf)
	for _, keep := range []string{"# mine\n", "MOUNTPOINT=/overlay\n", "OTHER='keep me'\n"} {
		if !strings.Contains(string(b), keep) {
			t.Errorf("config lost %q:\n%s", keep, b)
		}
	}
	if st, _ := os.Stat(conf); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode changed to %v", st.Mode())
	}

	// Human output, GPT, ext4, relative path, config from the environment.
	t.Setenv(config.EnvVar, filepath.Join(dir, "env.conf"))
	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)
	code, out, errs = runTool("mkoverlay", "--gpt", "--fs", "ext4", "--uuid", "01234567-89AB-4def-8123-456789abcdef", "1G", "rel.img")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"created " + filepath.Join(dir, "rel.img"), "1 GiB, gpt table", "ext4", "UUID 01234567-89ab-4def-8123-456789abcdef",
		"recorded in " + filepath.Join(dir, "env.conf")} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	b, _ = os.ReadFile(filepath.Join(dir, "env.conf"))
	if !strings.Contains(string(b), "SD_ROOTFS="+filepath.Join(dir, "rel.img")+"\n") {
		t.Errorf("env config: %s", b)
	}

	// --force replaces; the UUID changes and the config follows.
	code, _, errs = runTool("mkoverlay", "--config", conf, "--force", "8", img)
	if code != 0 {
		t.Fatalf("--force: exit %d: %s", code, errs)
	}
	info2, _ := image.Inspect(img)
	cfg, _ = config.Load(conf)
	if v, _ := cfg.Get(config.KeyUUID); info2 == nil || v != info2.UUID || v == info.UUID || info2.Size != 8*image.MiB {
		t.Errorf("after --force: info %+v, SD_UUID %q", info2, v)
	}
}

func TestMkoverlayBadInput(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ovpkg.conf")
	confText := "MOUNTPOINT=/overlay\n"
	os.WriteFile(conf, []byte(confText), 0o644)
	existing := filepath.Join(dir, "existing.img")
	os.WriteFile(existing, []byte("precious data"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	os.Symlink(conf, filepath.Join(dir, "link.conf"))
	before := listDir(t, dir)
	img := filepath.Join(dir, "new.img")

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"size 0", []string{"0", img}, 2, "zero"},
		{"size -1", []string{"--", "-1", img}, 2, "negative"},
		{"size -1 bare", []string{"-1", img}, 2, "-1"},
		{"size abc", []string{"abc", img}, 2, "not a number"},
		{"size huge", []string{"3T", img}, 2, "too large"},
		{"size huger", []string{"99999999999999999999", img}, 2, "too large"},
		{"size too small", []string{"2", img}, 2, "below the smallest"},
		{"size fraction", []string{"1.5G", img}, 2, "whole number"},
		{"no args", []string{}, 2, "expected SIZE and IMAGE"},
		{"one arg", []string{"128"}, 2, "expected SIZE and IMAGE"},
		{"three args", []string{"128", img, "extra"}, 2, "expected SIZE and IMAGE"},
		{"unknown flag after args", []string{"128", img, "--forse"}, 2, "flag provided but not defined: --forse"},
		{"bad fs", []string{"--fs", "xfs", "128", img}, 2, "ext2 or ext4"},
		{"long label", []string{"--label", "a-label-longer-than-16", "128", img}, 2, "longer than 16"},
		{"bad uuid", []string{"--uuid", "xyz", "128", img}, 2, "UUID"},
		{"unknown flag", []string{"--bogus", "128", img}, 2, "bogus"},
		{"existing image", []string{"8", existing}, 1, "already exists (use --force"},
		{"image is a dir", []string{"8", filepath.Join(dir, "adir")}, 1, "is a directory"},
		{"image is a dir, force", []string{"--force", "8", filepath.Join(dir, "adir")}, 1, "is a directory"},
		{"missing parent", []string{"8", filepath.Join(dir, "nope", "card.img")}, 1, "does not exist (create it first"},
		{"config dir missing", []string{"--config", filepath.Join(dir, "nodir", "ovpkg.conf"), "8", img}, 1, "was not kept"},
		{"config is a symlink", []string{"--config", filepath.Join(dir, "link.conf"), "8", img}, 1, "symbolic link"},
		{"config is a dir", []string{"--config", filepath.Join(dir, "adir"), "8", img}, 1, "adir"},
	}
	for _, c := range cases {
		args := append([]string{"mkoverlay"}, c.args...)
		if !strings.HasPrefix(c.name, "config") {
			args = append([]string{"mkoverlay", "--config", conf}, c.args...)
		}
		code, out, errs := runTool(args...)
		lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
		if code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.name, code, c.code, errs)
		}
		if !strings.HasPrefix(lines[0], "mkoverlay: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: stderr %q, want a line starting \"mkoverlay: \" containing %q", c.name, errs, c.want)
		}
		if len(lines) > 2 || (len(lines) == 2 && !strings.HasPrefix(lines[1], "Try ")) {
			t.Errorf("%s: error is not one line: %q", c.name, errs)
		}
		if out != "" {
			t.Errorf("%s: printed %q on stdout", c.name, out)
		}
		if got := listDir(t, dir); got != before {
			t.Errorf("%s: directory changed: %q, was %q", c.name, got, before)
		}
		if b, _ := os.ReadFile(conf); string(b) != confText {
			t.Errorf("%s: config changed: %q", c.name, b)
		}
		if b, _ := os.ReadFile(existing); string(b) != "precious data" {
			t.Errorf("%s: existing image changed", c.name)
		}
	}
}

func TestMkoverlayReadOnlyDirUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores mode bits; TestMkoverlayMountable covers a read-only mount")
	}
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o555)
	defer os.Chmod(ro, 0o755)
	code, _, errs := runTool("mkoverlay", "--config", filepath.Join(dir, "c.conf"), "8", filepath.Join(ro, "card.img"))
	if code != 1 || !strings.Contains(errs, "permission denied") || listDir(t, ro) != "" {
		t.Errorf("exit %d, stderr %q, dir %q", code, errs, listDir(t, ro))
	}
}

// TestMkoverlayMountable runs the built mkoverlay, attaches the partition
// with losetup (offset, size limit) in a private mount namespace, mounts
// it as ext2 (and an ext4 card as ext4), writes and reads files, stacks
// an overlayfs with its upper on the card (whiteouts are 0/0 character
// devices, opaque directories need trusted.* xattrs), unmounts, detaches
// and checks with e2fsck again. Also: a read-only directory is refused.
func TestMkoverlayMountable(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "losetup", "e2fsck", "blkid")
	dir := nstest.TempDir(t)
	for _, fs := range []string{"ext2", "ext4"} {
		r := nstest.MustRun(t, fmt.Sprintf(`
D=%[1]s/%[2]s; mkdir -p $D; cd $D
mkoverlay --config $D/ovpkg.conf --fs %[2]s 128 $D/card.img
. $D/ovpkg.conf
test "$SD_ROOTFS" = $D/card.img
L=$(losetup --offset 1048576 --sizelimit $((127*1024*1024)) --show -f $D/card.img)
cleanup() { umount -q $D/merged 2>/dev/null || true; umount -q $D/mnt 2>/dev/null || true; losetup -d $L 2>/dev/null || true; }
trap cleanup EXIT
test "$(blkid -p -o value -s UUID $L)" = "$SD_UUID"
# --force refuses an attached image and leaves it and the config alone
set +e; mkoverlay --config $D/ovpkg.conf --force 8 $D/card.img 2>err; rc=$?; set -e
test $rc = 1; grep -q "is attached to $L" err; test "$(wc -l < err)" = 1
test "$(stat -c %%s $D/card.img)" = $((128*1024*1024)); grep -q "SD_UUID=$SD_UUID" $D/ovpkg.conf
test "$(blkid -p -o value -s TYPE $L)" = %[2]s
mkdir -p mnt low/keep low/gone merged
echo base > low/file; echo base > low/keep/a; echo base > low/gone/b
mount -t %[2]s $L mnt
echo hello > mnt/hello; mkdir mnt/dir; seq 1 2000 > mnt/dir/numbers
for i in $(seq 1 500); do echo $i > mnt/dir/f$i; done
test "$(cat mnt/hello)" = hello; test "$(wc -l < mnt/dir/numbers)" = 2000
mkdir mnt/up mnt/work
mount -t overlay -o lowerdir=$D/low,upperdir=$D/mnt/up,workdir=$D/mnt/work ovl merged
rm merged/file                      # whiteout: char device 0/0 in upper
rm -r merged/keep; mkdir merged/keep; echo new > merged/keep/c   # opaque dir: trusted.overlay.opaque
umount merged
test "$(stat -c %%F:%%t:%%T mnt/up/file)" = "character special file:0:0"
mount -t overlay -o lowerdir=$D/low,upperdir=$D/mnt/up,workdir=$D/mnt/work ovl merged
test ! -e merged/file; test ! -e merged/keep/a; test "$(cat merged/keep/c)" = new; test -e merged/gone/b
umount merged
umount mnt
losetup -d $L
trap - EXIT
e2fsck -fn "$D/card.img?offset=1048576" >/dev/null
# read-only directory: refused, nothing created
mkdir ro; mount --bind ro ro; mount -o remount,bind,ro ro
set +e; mkoverlay --config $D/ro.conf 8 $D/ro/card.img 2>err; rc=$?; set -e
umount ro
echo "rc=$rc"; cat err; ls -A ro | wc -l
`, dir, fs))
		if !strings.Contains(r.Stdout, "rc=1\n") || !strings.Contains(r.Stdout, "read-only filesystem") || !strings.HasSuffix(r.Stdout, "\n0\n") {
			t.Errorf("%s: read-only dir: %s", fs, r)
		}
		if _, err := os.Stat(filepath.Join(dir, fs, "ro.conf")); err == nil {
			t.Errorf("%s: config written although the image was refused", fs)
		}
	}
}

func TestMkoverlayAsSubcommand(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runTool("ovpkg", "mkoverlay", "--config", filepath.Join(dir, "c.conf"), "abc", filepath.Join(dir, "x.img"))
	if code != 2 || out != "" || !strings.HasPrefix(errs, "ovpkg: ") || strings.Count(errs, "\n") != 2 || listDir(t, dir) != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = runTool("ovpkg", "mkoverlay", "--config", filepath.Join(dir, "c.conf"), "8", filepath.Join(dir, "x.img"))
	if code != 0 || listDir(t, dir) != "c.conf x.img" {
		t.Errorf("exit %d, stderr %q, dir %q", code, errs, listDir(t, dir))
	}
}
