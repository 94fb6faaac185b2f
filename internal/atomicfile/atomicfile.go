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
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Write replaces path with data, mode perm. Errors name the step and keep
// the cause (errors.Is works).
func Write(path string, data []byte, perm os.FileMode) error {
	fd, err := unix.Open(filepath.Dir(path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer unix.Close(fd)
	return writeAt(fd, filepath.Base(path), path, data, Options{Perm: perm, UID: -1, GID: -1})
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
func WriteAt(dirfd int, name string, data []byte, o Options) error {
	return writeAt(dirfd, name, name, data, o)
}

// writeAt is WriteAt whose messages call the file path.
func writeAt(dirfd int, name, path string, data []byte, o Options) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("writing %q: not a file name: %w", path, unix.EINVAL)
	}
	tmp := ".ovpkg.tmp" + strconv.FormatUint(uint64(rand.Uint32()), 36) + strconv.FormatUint(uint64(rand.Uint32()), 36)
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	step := "writing"
	for b := data; err == nil && len(b) > 0; {
		var n int
		n, err = unix.Write(fd, b)
		if n > 0 {
			b = b[n:]
		}
	}
	if err == nil && (o.UID >= 0 || o.GID >= 0) {
		step, err = "setting the owner of", unix.Fchown(fd, o.UID, o.GID)
	}
	if err == nil {
		step, err = "setting the mode of", unix.Fchmod(fd, uint32(o.Perm.Perm()))
	}
	if err == nil {
		step, err = "flushing", unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		step, err = "writing", cerr
	}
	if err == nil {
		step, err = "replacing", unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("%s %s: %w", step, path, err)
	}
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("flushing the directory of %s: %w", path, err)
	}
	return nil
}
