package mountset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/internal/trustpath"
	"github.com/ovpkg/ovpkg/overlay"
)

// ErrRunDir is wrapped by every refusal of a RUN_DIR someone other than
// root could have changed.
var ErrRunDir = errors.New("RUN_DIR not trusted")

// maxRecordSize bounds the mount record (a few KiB with 200 overlays and
// detached ones).
const maxRecordSize = 1 << 20

// runDirError is a refused RUN_DIR.
type runDirError struct {
	dir string
	msg string
	err error
}

func (e *runDirError) Error() string {
	return fmt.Sprintf("%s %s %s", config.KeyRunDir, e.dir, e.msg)
}

func (e *runDirError) Unwrap() []error { return []error{ErrRunDir, e.err} }

// checkRunDir makes sure the RUN_DIR at dir is a directory only root can
// change, and returns its path with any (root-owned) symbolic links on
// the way resolved. The directories above it must be trusted
// (trustpath.Dir); dir itself must be a real directory (not a symbolic
// link), owned by root (or the running user), with no access for group
// or others: a missing one is created so (mode 0700) when create is set,
// a root-owned one with read or search bits for others (left by an older
// ovpkg) is tightened to 0700, and anything else is refused, never
// repaired, since someone else may already have planted files in it.
// Without create a missing RUN_DIR is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func checkRunDir(dir string, create bool) (string, error) {
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	rparent, err := trustpath.Dir(parent)
	if errors.Is(err, fs.ErrNotExist) && create {
		if merr := os.MkdirAll(parent, 0o755); merr != nil {
			return "", fmt.Errorf("creating %s %s: %w", config.KeyRunDir, dir, merr)
		}
		rparent, err = trustpath.Dir(parent)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return "", &runDirError{dir: dir, msg: "lies in a directory someone other than root can change (" + err.Error() + "); set RUN_DIR to a root-owned directory such as /run/ovpkg", err: err}
	}
	p := filepath.Join(rparent, base)
	var st unix.Stat_t
	err = unix.Lstat(p, &st)
	if err == unix.ENOENT && create {
		if err = unix.Mkdir(p, 0o700); err == nil || err == unix.EEXIST {
			err = unix.Lstat(p, &st)
		}
	}
	if err == unix.ENOENT {
		return "", &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", config.KeyRunDir, dir, err)
	}
	fix := fmt.Sprintf("remove it (rm -r %s) and run the command again, which creates it root-owned with mode 0700", dir)
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return "", &runDirError{dir: dir, msg: "is a symbolic link; ovpkg keeps its lock and mount record only in a real root-owned directory: " + fix, err: ErrRunDir}
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "", &runDirError{dir: dir, msg: "is not a directory: " + fix, err: ErrRunDir}
	case !trustpath.OwnerOK(st.Uid):
		return "", &runDirError{dir: dir, msg: fmt.Sprintf("is owned by uid %d, not root: its owner could plant the lock or the mount record; %s", st.Uid, fix), err: ErrRunDir}
	case st.Mode&0o022 != 0:
		return "", &runDirError{dir: dir, msg: fmt.Sprintf("is writable by group or others (mode %04o): anyone could have planted the lock or the mount record; %s", st.Mode&0o7777, fix), err: ErrRunDir}
	case st.Mode&0o077 != 0:
		if err := unix.Chmod(p, 0o700); err != nil {
			return "", fmt.Errorf("%s %s: making it mode 0700: %w", config.KeyRunDir, dir, err)
		}
	}
	return p, nil
}

// recordPath is RUN_DIR/mounts.json (for messages).
func recordPath(runDir string) string { return filepath.Join(runDir, RecordName) }

// readRecord returns the record in runDir, or nil when there is none. The
// file is opened with O_NOFOLLOW in the checked RUN_DIR, must be a
// root-owned regular file of at most 1 MiB, and every field is checked
// (validate): the record decides what eject unmounts and what a
// transaction restacks.
func readRecord(runDir string) (*Record, error) {
	dir, err := checkRunDir(runDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := trustpath.ReadIn(dir, RecordName, maxRecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, unix.EACCES) {
		return nil, fmt.Errorf("reading the mount record %s: %w (run as root)", recordPath(runDir), err)
	}
	if err != nil {
		return nil, fmt.Errorf("mount record %s refused: %w", recordPath(runDir), err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("mount record %s is damaged (%v); check /proc/self/mountinfo and remove it by hand", recordPath(runDir), err)
	}
	if r.Version > recordVersion {
		return nil, fmt.Errorf("mount record %s was written by a newer ovpkg (version %d)", recordPath(runDir), r.Version)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("mount record %s is not one ovpkg wrote (%v); check /proc/self/mountinfo and remove it by hand", recordPath(runDir), err)
	}
	return &r, nil
}

// writeRecord replaces the record atomically (internal/atomicfile: a new
// temporary file, O_EXCL, renamed over the old record) in the checked
// RUN_DIR, mode 0600.
func writeRecord(runDir string, r *Record) error {
	r.Version = recordVersion
	cp := *r
	cp.State, cp.AlreadyMounted, cp.Warnings = "", false, nil
	if err := cp.validate(); err != nil {
		return fmt.Errorf("writing the mount record: %w", err)
	}
	b, err := json.MarshalIndent(&cp, "", "  ")
	if err != nil {
		return err
	}
	dir, err := checkRunDir(runDir, true)
	if err != nil {
		return fmt.Errorf("writing the mount record: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, RecordName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the mount record: %w", err)
	}
	return nil
}

// WriteRecord replaces the mount record in runDir (atomically) with r:
// for txn, which restacks the overlays and must keep the record true.
func WriteRecord(runDir string, r *Record) error { return writeRecord(runDir, r) }

func removeRecord(runDir string) error {
	dir, err := checkRunDir(runDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = os.Remove(filepath.Join(dir, RecordName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the mount record: %w", err)
	}
	return atomicfile.SyncDir(dir)
}

// isLoopPath accepts /dev/loopN (N: 1 to 7 digits).
func isLoopPath(p string) bool {
	n, ok := strings.CutPrefix(p, "/dev/loop")
	if !ok || n == "" || len(n) > 7 {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Limits on what a record may hold.
const (
	maxPath     = 4096
	maxDirs     = 256
	maxLayers   = 100000
	maxDetached = 1024
)

// validate checks every field of a record read from RUN_DIR as untrusted
// input: absolute clean paths without control characters, a /dev/loopN
// device, layer ids and overlay directories as the card package accepts
// them, overlays over the recorded root whose upper, work and lower
// directories lie on the recorded card mount (the last lower is the
// base directory: the directory itself, or Base/<dir> at boot), sizes
// within limits.
func (r *Record) validate() error {
	if r.Version < 1 {
		return fmt.Errorf("version %d", r.Version)
	}
	for name, p := range map[string]string{"image": r.Image, "card_mount": r.CardMount, "root": r.Root} {
		if err := absPath(p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for name, p := range map[string]string{"config": r.Config, "base": r.Base} {
		if p == "" {
			continue
		}
		if err := absPath(p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if r.CardMount == "/" {
		return errors.New("card_mount is /")
	}
	if !isLoopPath(r.Loop) {
		return fmt.Errorf("loop %q is not a /dev/loopN device", r.Loop)
	}
	if r.Offset < 0 || r.SizeLimit < 0 || r.PID < 0 {
		return errors.New("negative offset, size limit or PID")
	}
	if len(r.Dirs) > maxDirs || len(r.Overlays) > maxDirs || len(r.Layers) > maxLayers || len(r.Detached) > maxDetached {
		return errors.New("too many directories, overlays, layers or detached overlays")
	}
	for _, d := range r.Dirs {
		if err := card.CheckDir(d); err != nil {
			return fmt.Errorf("dirs: %w", err)
		}
	}
	if err := checkIDs(r.Layers); err != nil {
		return err
	}
	if len(r.Layers) > 0 {
		top := r.Layers[len(r.Layers)-1]
		if r.TopLayer != top || r.Tree != card.New(r.CardMount).Tree(top) {
			return fmt.Errorf("top_layer %q and tree %q do not match the layers", r.TopLayer, r.Tree)
		}
	} else if r.TopLayer != "" || r.Tree != "" {
		return errors.New("top_layer or tree without layers")
	}
	for _, m := range r.Overlays {
		if err := r.checkOverlay(m); err != nil {
			return err
		}
	}
	for _, d := range r.Detached {
		if err := r.checkUnder("detached target", d.Target, r.Root); err != nil {
			return err
		}
		if err := r.checkUnder("detached upper", d.Upper, r.CardMount); err != nil {
			return err
		}
		if err := checkIDs(d.Layers); err != nil {
			return err
		}
	}
	if err := r.checkTrust(); err != nil {
		return err
	}
	if f := r.FlushFailed; f != nil {
		if len(f.Error) > maxPath || len(f.Unwritten) > maxUnwritten || f.More < 0 {
			return errors.New("flush_failed is too large")
		}
		for _, p := range f.Unwritten {
			if err := r.checkUnder("unwritten file", p, r.CardMount); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Record) checkOverlay(m overlay.Mount) error {
	if err := r.checkUnder("overlay target", m.Target, r.Root); err != nil {
		return err
	}
	if err := r.checkUnder("overlay upper", m.Upper, r.CardMount); err != nil {
		return err
	}
	if err := r.checkUnder("overlay work", m.Work, r.CardMount); err != nil {
		return err
	}
	if len(m.Lowers) == 0 || len(m.Lowers) > maxLayers {
		return fmt.Errorf("overlay of %s: %d lower directories", m.Target, len(m.Lowers))
	}
	for i, l := range m.Lowers {
		if i == len(m.Lowers)-1 && l == r.BaseDir(strings.TrimPrefix(strings.TrimPrefix(m.Target, r.Root), "/")) {
			continue // the base directory under the overlay
		}
		if err := r.checkUnder("overlay lower", l, r.CardMount); err != nil {
			return err
		}
	}
	return nil
}

// checkUnder refuses p unless it is an absolute clean path strictly
// below dir.
func (r *Record) checkUnder(what, p, dir string) error {
	if err := absPath(p); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if dir != "/" && !strings.HasPrefix(p, dir+"/") || p == dir {
		return fmt.Errorf("%s %s is not below %s", what, p, dir)
	}
	return nil
}

func absPath(p string) error {
	if p == "" || len(p) > maxPath || !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q is not an absolute clean path", p)
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%q has control characters", p)
		}
	}
	return nil
}

func checkIDs(ids []string) error {
	for _, id := range ids {
		if !validID(id) {
			return fmt.Errorf("layer id %q is not valid", id)
		}
	}
	return nil
}

// validID is the card's layer id syntax: 1-64 of [0-9A-Za-z._-], not
// "." or "..".
func validID(id string) bool {
	if id == "" || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
