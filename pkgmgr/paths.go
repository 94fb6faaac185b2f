package pkgmgr

import (
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// OutsideError lists package paths that would land outside the overlaid
// directories, i.e. be written to the base root.
type OutsideError struct {
	Package string
	Paths   []string
	Dirs    []string // the overlaid directories
}

func (e *OutsideError) Error() string {
	shown := e.Paths
	more := ""
	if len(shown) > 5 {
		more = fmt.Sprintf(" and %d more", len(shown)-5)
		shown = shown[:5]
	}
	return fmt.Sprintf("package %s writes outside the overlaid directories (%s): /%s%s; installing it would change the base root; add the directory to OVERLAY_DIRS or install it to the base",
		e.Package, strings.Join(e.Dirs, " "), strings.Join(shown, ", /"), more)
}

// OverlaidTop says whether top-level entry name of root reaches an
// overlaid directory: it is one, or it is a symlink into one (merged-usr:
// /bin -> usr/bin).
func OverlaidTop(root string, dirs []string, name string) bool {
	set := map[string]bool{}
	for _, d := range dirs {
		set[strings.Trim(d, "/")] = true
	}
	for i := 0; i < 8; i++ {
		if set[name] {
			return true
		}
		t, err := os.Readlink(filepath.Join(root, name))
		if err != nil {
			return false
		}
		t = strings.TrimPrefix(filepath.Clean("/"+strings.TrimPrefix(t, "/")), "/")
		name, _, _ = strings.Cut(t, "/")
	}
	return false
}

// CheckPaths refuses a plan whose archives write outside dirs (the
// overlaid top-level directories of root). Directory entries outside are
// allowed when the directory already exists (dpkg leaves those alone).
func CheckPaths(root string, dirs []string, plan *Plan) error {
	keys := make([]string, 0, len(plan.Paths))
	for k := range plan.Paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var bad []string
		for _, p := range plan.Paths[k] {
			top, _, _ := strings.Cut(p, "/")
			if !OverlaidTop(root, dirs, top) || !strings.Contains(p, "/") {
				bad = append(bad, p)
			}
		}
		for _, d := range plan.Dirs[k] {
			top, _, _ := strings.Cut(d, "/")
			if OverlaidTop(root, dirs, top) {
				continue
			}
			if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
				bad = append(bad, d+"/")
			}
		}
		if len(bad) > 0 {
			return &OutsideError{Package: k, Paths: bad, Dirs: dirs}
		}
	}
	return nil
}

// SpaceError says the card (or the directory archives are downloaded
// to) cannot hold what an operation needs. It wraps ENOSPC.
type SpaceError struct {
	Path       string // the card's mount point, or the archive directory
	Need, Free int64
	What       string
	Archives   bool // Path is where the archives go, not the card
}

func (e *SpaceError) Error() string {
	if e.Archives {
		return fmt.Sprintf("not enough space for the downloads in %s: %s need about %s, %s free; free space there or set ARCHIVE_DIR in the configuration to a bigger place",
			e.Path, e.What, units.Bytes(e.Need), units.Bytes(e.Free))
	}
	return fmt.Sprintf("not enough space on the card (%s): %s need about %s, %s free; remove packages from the card or make a bigger one",
		e.Path, e.What, units.Bytes(e.Need), units.Bytes(e.Free))
}

func (e *SpaceError) Unwrap() error { return unix.ENOSPC }

// Space is a file system's size and free space (for unprivileged users
// and for root: ovpkg runs as root and the card has no reserved blocks
// that matter here, but Avail is what a non-root maintainer script sees).
type Space struct {
	Total, Free, Avail int64
	Files, FreeFiles   uint64
	FSID               [2]int32
}

// StatSpace statfs's path.
func StatSpace(path string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Space{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	bs := int64(st.Bsize)
	return Space{
		Total: int64(st.Blocks) * bs, Free: int64(st.Bfree) * bs, Avail: int64(st.Bavail) * bs,
		Files: uint64(st.Files), FreeFiles: uint64(st.Ffree), FSID: [2]int32{int32(st.Fsid.Val[0]), int32(st.Fsid.Val[1])},
	}, nil
}

// Overhead is what a change costs on the card besides the packages'
// Installed-Size: the package database copied up (status, status-old),
// new file lists and scripts, and ext2's partly used blocks (Installed-
// Size counts 1 KiB per file, the card has 4 KiB blocks): a sixteenth of
// the size plus 1 MiB.
func Overhead(statusSize, size int64) int64 {
	if size < 0 {
		size = 0
	}
	return 2*statusSize + size/16 + 1<<20
}

// CheckSpace checks that the card at cardPath has cardNeed bytes free
// and that archiveDir (where downloads go; "" for none) has download
// bytes free: both on the card when archiveDir is on the card's file
// system. what names the packages in the message.
func CheckSpace(cardPath string, cardNeed int64, archiveDir string, download int64, what string) error {
	card, err := StatSpace(cardPath)
	if err != nil {
		return err
	}
	if archiveDir != "" && download > 0 {
		arch, err := StatSpace(archiveDir)
		if err != nil {
			return err
		}
		if arch.FSID == card.FSID && arch.Total == card.Total {
			cardNeed += download
		} else if download > arch.Free {
			return &SpaceError{Path: archiveDir, Need: download, Free: arch.Free, What: what + " (download)", Archives: true}
		}
	}
	if cardNeed > card.Free {
		return &SpaceError{Path: cardPath, Need: cardNeed, Free: card.Free, What: what}
	}
	return nil
}
