package pkgmgr

import (
	"fmt"
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

// SpaceError says the card cannot hold what an operation needs. It wraps
// ENOSPC.
type SpaceError struct {
	Path       string // the card's mount point
	Need, Free int64
	What       string
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough space on the card (%s): %s need about %s, %s free; remove packages from the card or make a bigger one",
		e.Path, e.What, HumanSize(e.Need), HumanSize(e.Free))
}

func (e *SpaceError) Unwrap() error { return unix.ENOSPC }

// Space is a file system's size and free space (for unprivileged users
// and for root: ovpkg runs as root and the card has no reserved blocks
// that matter here, but Avail is what a non-root maintainer script sees).
type Space struct {
	Total, Free, Avail int64
	Files, FreeFiles   uint64
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
		Files: st.Files, FreeFiles: st.Ffree,
	}, nil
}

// Overhead is what an install costs on the card besides the packages:
// the package database is copied up (status, status-old, available) and
// every file list and maintainer script is new; ext2 needs a block per
// small file and metadata blocks.
func Overhead(statusSize int64, nfiles int) int64 {
	return 2*statusSize + int64(nfiles)*4096/4 + 1<<20
}

// CheckSpace compares what plan needs on the card (download + installed
// size + database overhead) with what the card at cardPath has free.
func CheckSpace(cardPath string, plan *Plan, statusSize int64) error {
	sp, err := StatSpace(cardPath)
	if err != nil {
		return err
	}
	nfiles := 0
	for _, p := range plan.Paths {
		nfiles += len(p)
	}
	need := plan.InstallSize + plan.DownloadSize + Overhead(statusSize, nfiles)
	if need > sp.Free {
		what := fmt.Sprintf("%d package(s)", len(plan.Install))
		return &SpaceError{Path: cardPath, Need: need, Free: sp.Free, What: what}
	}
	if nfiles > 0 && uint64(nfiles) > sp.FreeFiles {
		return &SpaceError{Path: cardPath, Need: need, Free: sp.Free,
			What: fmt.Sprintf("%d files (the card has %d free inodes) and they", nfiles, sp.FreeFiles)}
	}
	return nil
}

// HumanSize prints n bytes as "1.5 MiB".
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
