package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image/ext2"
)

// Defaults for Options.
const (
	DefaultLabel = "ovpkg"
	DefaultFS    = ext2.TypeExt2
	DefaultTable = TableDOS
)

// Options describe the image Create makes.
type Options struct {
	Size  int64     // bytes; a whole number of MiB within MinSize..MaxSize
	Table string    // TableDOS (default) or TableGPT
	FS    string    // "ext2" (default) or "ext4" (no journal; extents)
	Label string    // volume label, at most 16 bytes; default DefaultLabel
	UUID  string    // filesystem UUID; empty means random
	Force bool      // replace an existing image file
	Now   time.Time // creation time; zero means now
}

func (o *Options) normalize() error {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.FS == "" {
		o.FS = DefaultFS
	}
	if o.Label == "" {
		o.Label = DefaultLabel
	}
	switch {
	case o.Size < MinSize:
		return fmt.Errorf("size %d bytes is below the smallest card, %s", o.Size, FormatSize(MinSize))
	case o.Size > MaxSize:
		return fmt.Errorf("size %s is above the largest card, %s", FormatSize(o.Size), FormatSize(MaxSize))
	case o.Size%MiB != 0:
		return fmt.Errorf("size %d bytes is not a whole number of MiB", o.Size)
	case o.Table != TableDOS && o.Table != TableGPT:
		return fmt.Errorf("partition table %q not supported (dos or gpt)", o.Table)
	case o.FS != ext2.TypeExt2 && o.FS != ext2.TypeExt4:
		return fmt.Errorf("filesystem %q not supported (ext2 or ext4)", o.FS)
	case len(o.Label) > 16:
		return fmt.Errorf("label %q is longer than 16 bytes", o.Label)
	}
	return nil
}

// Pending is an image built under a temporary name beside its target,
// flushed and verified, waiting to be renamed into place (Commit) or
// thrown away (Abort). It lets a caller do other fallible work (writing
// the config) between building and publishing.
type Pending struct {
	path, tmp string
	force     bool
	info      *Info
	done      bool
}

// Create makes the image at path: Prepare then Commit.
func Create(path string, opt Options) (*Info, error) {
	p, err := Prepare(path, opt)
	if err != nil {
		return nil, err
	}
	return p.Commit()
}

// Prepare checks the target, builds the image in a temporary file in the
// same directory (sparse: truncate, partition table, filesystem
// metadata), fsyncs it and inspects it. Nothing exists at path yet.
func Prepare(path string, opt Options) (p *Pending, retErr error) {
	if err := opt.normalize(); err != nil {
		return nil, &Error{Path: path, Msg: err.Error()}
	}
	var uuid [16]byte
	var err error
	if opt.UUID == "" {
		uuid, err = newUUID()
	} else {
		uuid, err = ParseUUID(opt.UUID)
	}
	if err != nil {
		return nil, &Error{Path: path, Msg: "UUID", Err: err}
	}
	seed, err := newUUID()
	if err != nil {
		return nil, &Error{Path: path, Msg: "random hash seed", Err: err}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{Path: path, Msg: "cannot resolve path", Err: err}
	}
	if err := checkTarget(abs, opt.Force); err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	layout, err := PlanLayout(opt.Size, opt.Table)
	if err != nil {
		return nil, &Error{Path: abs, Msg: err.Error()}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".mkoverlay-*")
	if err != nil {
		return nil, createError(abs, dir, err)
	}
	tmp := f.Name()
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Truncate(opt.Size); err != nil {
		if errors.Is(err, syscall.EFBIG) {
			return nil, &Error{Path: abs, Msg: fmt.Sprintf("the filesystem holding %s cannot hold a %s file (FAT cards allow at most 4 GiB per file; choose a smaller SIZE)", dir, FormatSize(opt.Size)), Err: err, quiet: true}
		}
		return nil, &Error{Path: abs, Msg: "cannot size the image file", Err: err}
	}
	if err := writeTable(f, opt.Size, layout, opt.Label); err != nil {
		return nil, &Error{Path: abs, Msg: "writing the partition table", Err: err}
	}
	_, err = ext2.Format(f, layout.PartStart, layout.PartSize, ext2.Options{
		Type: opt.FS, Label: opt.Label, UUID: uuid, HashSeed: seed, Now: opt.Now,
	})
	if err != nil {
		return nil, &Error{Path: abs, Msg: "writing the filesystem", Err: err}
	}
	if err := f.Sync(); err != nil {
		return nil, &Error{Path: abs, Msg: "flushing the image", Err: err}
	}
	if err := f.Close(); err != nil {
		return nil, &Error{Path: abs, Msg: "closing the image", Err: err}
	}
	info, err := Inspect(tmp)
	if err != nil {
		return nil, &Error{Path: abs, Msg: "the new image does not verify (a bug in mkoverlay)", Err: err}
	}
	info.Path = abs
	return &Pending{path: abs, tmp: tmp, force: opt.Force, info: info}, nil
}

// Info describes the pending image (Path is the final path).
func (p *Pending) Info() *Info { return p.info }

// Commit renames the image into place and flushes the directory. Without
// Force an image that appeared at the path meanwhile is not replaced.
func (p *Pending) Commit() (*Info, error) {
	if p.done {
		return nil, &Error{Path: p.path, Msg: "already committed or aborted"}
	}
	p.done = true
	var err error
	if p.force {
		err = os.Rename(p.tmp, p.path)
	} else {
		err = unix.Renameat2(unix.AT_FDCWD, p.tmp, unix.AT_FDCWD, p.path, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// Filesystem without RENAME_NOREPLACE: check, then rename.
			if _, serr := os.Lstat(p.path); serr == nil {
				err = unix.EEXIST
			} else {
				err = os.Rename(p.tmp, p.path)
			}
		}
	}
	if err != nil {
		os.Remove(p.tmp)
		if errors.Is(err, unix.EEXIST) {
			return nil, &Error{Path: p.path, Msg: "appeared while the image was being made; not replaced (use --force to replace it)", Err: fs.ErrExist, quiet: true}
		}
		return nil, &Error{Path: p.path, Msg: "cannot move the new image into place", Err: err}
	}
	if d, err := os.Open(filepath.Dir(p.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return p.info, nil
}

// Abort removes the temporary image; the target was never touched.
func (p *Pending) Abort() error {
	if p.done {
		return nil
	}
	p.done = true
	return os.Remove(p.tmp)
}

// checkTarget refuses what Create must not replace.
func checkTarget(abs string, force bool) error {
	st, err := os.Lstat(abs)
	dir := filepath.Dir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dst, derr := os.Stat(dir)
		if errors.Is(derr, fs.ErrNotExist) {
			return &Error{Path: abs, Msg: fmt.Sprintf("directory %s does not exist (create it first, e.g. mkdir -p %s)", dir, dir), Err: derr, quiet: true}
		}
		if derr != nil {
			return &Error{Path: abs, Msg: "cannot reach directory " + dir, Err: derr}
		}
		if !dst.IsDir() {
			return &Error{Path: abs, Msg: dir + " is not a directory", Err: syscall.ENOTDIR}
		}
		return nil
	case err != nil:
		return &Error{Path: abs, Msg: "cannot check the target", Err: err}
	case st.IsDir():
		return &Error{Path: abs, Msg: "is a directory (name the image file, e.g. " + filepath.Join(abs, "card.img") + ")", Err: syscall.EISDIR, quiet: true}
	case st.Mode()&os.ModeSymlink != 0:
		return &Error{Path: abs, Msg: "is a symbolic link; name the real file"}
	case !st.Mode().IsRegular():
		return &Error{Path: abs, Msg: "is not a regular file (mkoverlay writes image files, not devices)"}
	case !force:
		return &Error{Path: abs, Msg: "already exists (use --force to replace it)", Err: fs.ErrExist, quiet: true}
	}
	return nil
}

func createError(abs, dir string, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return &Error{Path: abs, Msg: "directory " + dir + " is on a read-only filesystem (remount it read-write or choose another directory)", Err: err, quiet: true}
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &Error{Path: abs, Msg: "cannot create a file in " + dir + ": permission denied (run as root or choose a writable directory)", Err: err, quiet: true}
	case errors.Is(err, syscall.ENOSPC):
		return &Error{Path: abs, Msg: "no space left in " + dir, Err: err}
	}
	return &Error{Path: abs, Msg: "cannot create a file in " + dir, Err: err}
}
