package pkgmgr

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/mount"
)

// The base root stays read-only to the package manager. Run (with
// RunOptions.Writable) gives the package manager's init a mount
// namespace of its own, and there, before it starts the package manager,
// the init (protectBase) remounts read-only every mount of a persistent
// file system except the writable paths: the live overlays, the card,
// the archive directory, RUN_DIR. Virtual and volatile file systems
// (proc, sysfs, devtmpfs, tmpfs...) stay writable, and so does /tmp,
// bind-mounted on itself when it is only a directory of the root. Writes
// through the overlays land on the card as before (the namespace shares
// their superblocks); a package file or a maintainer script that writes
// anywhere else in the base fails with EROFS ("Read-only file system"),
// the package manager fails, and the transaction is undone. This costs
// nothing per package, unlike listing every archive (a full
// decompression: 14 s for supertux-data), and it also covers what
// maintainer scripts write. The namespace is the init's: it dies with
// the package manager; nobody else sees the read-only mounts.

// ErrOutside is a package (or its scripts) writing outside the overlaid
// directories: refused, so the base root is never written.
var ErrOutside = errors.New("writes outside the overlaid directories")

// envWritable passes RunOptions.Writable to the init, one path a line.
const envWritable = "OVPKG_PM_WRITABLE"

// volatileFS are file system types that hold no base-root data: they
// stay writable.
var volatileFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "tmpfs": true, "ramfs": true,
	"mqueue": true, "cgroup": true, "cgroup2": true, "securityfs": true, "debugfs": true,
	"tracefs": true, "pstore": true, "bpf": true, "configfs": true, "fusectl": true,
	"hugetlbfs": true, "binfmt_misc": true, "efivarfs": true, "autofs": true, "nsfs": true,
	"rpc_pipefs": true, "nfsd": true, "selinuxfs": true,
}

// protectBase runs in the init's own mount namespace: see above. It
// returns what it made read-only.
func protectBase(writable []string) ([]string, error) {
	// Nothing done here may propagate to the parent namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("making the package manager's mounts private: %w", err)
	}
	tab, err := mount.Self()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, w := range writable {
		w = filepath.Clean(w)
		if w == "/" || !filepath.IsAbs(w) {
			continue
		}
		fi, err := os.Stat(w)
		if err != nil || !fi.IsDir() {
			continue
		}
		if tab.Lookup(w) == nil {
			// Only a directory: make it a mount of its own, which keeps
			// its own (writable) flag when its parent goes read-only.
			if err := unix.Mount(w, w, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return nil, fmt.Errorf("keeping %s writable: %w", w, err)
			}
		}
		keep[w] = true
	}
	if tab, err = mount.Self(); err != nil {
		return nil, err
	}
	var done []string
	for _, m := range tab {
		mp := filepath.Clean(m.Mountpoint)
		if keep[mp] || volatileFS[m.FSType] || hasOpt(m.Options, "ro") {
			continue
		}
		// Only the mount a lookup of its mount point reaches: one an
		// overlay (or another mount) covers cannot be written anyway.
		if id, err := mountIDOf(mp); err != nil || id != uint64(m.ID) {
			continue
		}
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
		for opt, f := range map[string]uintptr{"nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
			"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME} {
			if hasOpt(m.Options, opt) {
				flags |= f
			}
		}
		if err := unix.Mount("", mp, "", flags, ""); err != nil {
			return done, fmt.Errorf("making %s (%s) read-only for the package manager: %w", mp, m.FSType, err)
		}
		done = append(done, mp)
	}
	return done, nil
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// mountIDOf is the ID of the mount path resolves to (fdinfo's mnt_id,
// Linux 3.15 and later).
func mountIDOf(path string) (uint64, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	f, err := os.Open("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "mnt_id:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no mnt_id in fdinfo", path)
}

// readOnlyWatch notes the first line of output that says a write failed
// on a read-only file system.
// and the first error line.
type readOnlyWatch struct {
	line    string
	errLine string
	// opkg's "Collected errors:" block: " * func: message" lines.
	inCollected bool
	collected   []string
}

var readOnlyText = "Read-only file system"

func (r *readOnlyWatch) see(l string) {
	if r.line == "" && strings.Contains(l, readOnlyText) {
		r.line = strings.TrimSpace(l)
	}
	if r.errLine == "" && isErrorLine(l) {
		r.errLine = strings.TrimSpace(l)
	}
	switch {
	case l == "Collected errors:":
		r.inCollected = true
	case r.inCollected && strings.HasPrefix(l, " * "):
		if len(r.collected) < 50 {
			r.collected = append(r.collected, strings.TrimSpace(strings.TrimPrefix(l, " * ")))
		}
	case r.inCollected && strings.TrimSpace(l) == "":
	default:
		r.inCollected = false
	}
}
