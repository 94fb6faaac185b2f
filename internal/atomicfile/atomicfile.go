// Package atomicfile replaces small files so that a crash or a pulled card
// leaves either the old content or the new, never a mix: the data goes to a
// temporary file beside the target, is flushed, renamed over the target,
// and the directory is flushed so the rename itself is on disk.
//
// It is used for everything ovpkg keeps that must survive a pulled card
// (the config, the card's stack file, the transaction journal, the mount
// record). It does not lock: callers serialise writers (the ovpkg lock).
package atomicfile

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Write replaces path with data, mode perm. Errors name the step and keep
// the cause (errors.Is works).
func Write(path string, data []byte, perm os.FileMode) (retErr error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if retErr != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("flushing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir flushes a directory, making renames and new entries in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("flushing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing directory %s: %w", dir, err)
	}
	return nil
}

// Options are the file attributes WriteAt gives the new file.
type Options struct {
	Perm     os.FileMode
	UID, GID int // owner; -1 keeps the writer's
}

// WriteAt replaces name in the directory dirfd with data, never following
// a link: a new temporary beside it (O_CREAT|O_EXCL|O_NOFOLLOW), owner
// and mode set on the descriptor (errors reported, not dropped), fsync,
// rename over name (a link there is replaced, not followed), directory
// fsync. dirfd must be a directory opened for reading (not O_PATH) so
// that it can be flushed; the caller chose how it was reached.
func WriteAt(dirfd int, name string, data []byte, o Options) (retErr error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("writing %q: not a file name: %w", name, unix.EINVAL)
	}
	var tmp string
	var fd int
	for i := 0; ; i++ {
		tmp = fmt.Sprintf(".%s.tmp%d", name, rand.Uint32())
		if len(tmp) > 255 {
			tmp = fmt.Sprintf(".ovpkg.tmp%d", rand.Uint32())
		}
		var err error
		fd, err = unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST && i < 100 {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		break
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer func() {
		if retErr != nil {
			f.Close()
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if o.UID >= 0 || o.GID >= 0 {
		if err := unix.Fchown(fd, o.UID, o.GID); err != nil {
			return fmt.Errorf("writing %s: setting the owner: %w", name, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(o.Perm.Perm())); err != nil {
		return fmt.Errorf("writing %s: setting the mode: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flushing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("flushing the directory of %s: %w", name, err)
	}
	return nil
}
