package image

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/trustpath"
)

// ErrNotRootOnly: the image file, or a directory above it, can be
// changed by someone other than root. Whoever can write the image can put
// a setuid-root program on the card (debugfs -w, no mount needed), so
// ovmount refuses it.
var ErrNotRootOnly = errors.New("card image not root-only")

// FATMountOptions are the mount options that make a FAT (vfat, exfat)
// card's files root-owned and writable by root alone: FAT keeps no
// owners, the mount decides them for every file.
const FATMountOptions = "uid=0,gid=0,fmask=0077,dmask=0077"

// Filesystem magics (statfs f_type) of filesystems without Unix owners,
// whose owners and modes come from mount options.
const (
	msdosMagic = 0x4d44
	exfatMagic = 0x2011bab0
	ntfsMagic  = 0x5346544e
	ntfs3Magic = 0x7366746e
	fuseMagic  = 0x65735546
)

// OpenOwned opens the card image at the absolute path for attaching it
// (read-write, O_NOFOLLOW, O_CLOEXEC) and checks, on the open descriptor,
// that only root can change it: every directory from / down to it is
// root's and not writable by group or others (unless sticky; root-owned
// symbolic links on the way are followed, see internal/trustpath), the
// file itself is a regular file (or block device) owned by root and not
// writable by group or others (a block device may be group-writable: its
// group, disk, is root's in all but name). A symbolic link as the image
// itself is refused. The check is on the descriptor the caller then
// attaches, and nobody but root can swap a name in the checked
// directories, so there is no window between the check and the use.
//
// Refusals wrap ErrNotRootOnly and say, in one line, what is wrong,
// where, and how to fix it (for a FAT card: the mount options). Other
// failures (a missing file) keep their errno.
func OpenOwned(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, &Error{Path: path, Msg: "is not an absolute path", Err: unix.EINVAL}
	}
	path = filepath.Clean(path)
	dir, err := trustpath.Dir(filepath.Dir(path))
	if err != nil {
		var te *trustpath.Error
		if errors.As(err, &te) && errors.Is(err, trustpath.ErrUntrusted) {
			return nil, &Error{Path: path, Msg: te.Error() + fatHint(te.At) + "; whoever can change it can put a setuid-root program on the card", Err: ErrNotRootOnly, quiet: true}
		}
		return nil, &Error{Path: path, Msg: "cannot check its directory", Err: err}
	}
	fd, err := unix.Open(filepath.Join(dir, filepath.Base(path)), unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.ELOOP {
		return nil, &Error{Path: path, Msg: "is a symbolic link; set SD_ROOTFS to the image file itself", Err: ErrNotRootOnly, quiet: true}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	unix.SetNonblock(fd, false)
	f := os.NewFile(uintptr(fd), path)
	if err := CheckOwned(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckOwned checks the open image f (fstat, fstatfs): a regular file or
// block device, owned by root, not writable by group or others (a block
// device may be group-writable).
func CheckOwned(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &Error{Path: f.Name(), Msg: "cannot stat", Err: err}
	}
	p := f.Name()
	kind := st.Mode & unix.S_IFMT
	if kind != unix.S_IFREG && kind != unix.S_IFBLK {
		return &Error{Path: p, Msg: "is neither a regular file nor a block device", Err: ErrNotRootOnly, quiet: true}
	}
	var why, fix string
	switch {
	case st.Uid != 0:
		why = fmt.Sprintf("is owned by uid %d, not root", st.Uid)
		fix = "run: chown root:root " + p
	case st.Mode&0o002 != 0 || (kind == unix.S_IFREG && st.Mode&0o020 != 0):
		why = fmt.Sprintf("is writable by group or others (mode %04o)", st.Mode&0o7777)
		fix = "run: chmod go-w " + p
	default:
		return nil
	}
	var sfs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &sfs) == nil && noOwners(int64(sfs.Type)) {
		fix = fatFix(uint64(st.Dev))
	}
	return &Error{Path: p, Msg: why + ": whoever can write it can put a setuid-root program on the card (" + fix + ")", Err: ErrNotRootOnly, quiet: true}
}

// noOwners says whether a filesystem (statfs f_type) takes its files'
// owners and modes from mount options.
func noOwners(t int64) bool {
	switch uint32(t) {
	case msdosMagic, exfatMagic, ntfsMagic, ntfs3Magic, fuseMagic:
		return true
	}
	return false
}

// fatHint is the fix for a directory at on a filesystem without owners
// ("" for any other).
func fatHint(at string) string {
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if at == "" || unix.Statfs(at, &sfs) != nil || !noOwners(int64(sfs.Type)) || unix.Stat(at, &st) != nil {
		return ""
	}
	return " (" + fatFix(uint64(st.Dev)) + ")"
}

// fatFix is the fix for a card filesystem without owners on device dev:
// mount it again as root with FATMountOptions.
func fatFix(dev uint64) string {
	where := "the card"
	if mp := mountPointOf(dev); mp != "" {
		where = mp
	}
	return fmt.Sprintf("a FAT card keeps no owners: unmount %s and mount it again as root with -o %s", where, FATMountOptions)
}

// mountPointOf finds where the filesystem of device dev is mounted in
// this mount namespace ("" when not found).
func mountPointOf(dev uint64) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	mp := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && fs[2] == want {
			mp = unescapeMount(fs[4])
		}
	}
	return mp
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOct(c byte) bool { return c >= '0' && c <= '7' }
