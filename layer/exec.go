package layer

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options tune Squash and Copy.
type Options struct {
	// KeepWhiteouts: the result will sit over a base (Squash of card
	// layers): keep whiteouts that may hide a base entry and mark opaque
	// the directories that hid lower contents. Without it the result is a
	// plain tree with no overlay markers.
	KeepWhiteouts bool
	// Base, with KeepWhiteouts, is the directory the result will sit over
	// (laid out like the layers). A whiteout is kept only where Base has
	// an entry to hide: elsewhere it hides nothing, and in a directory
	// the overlay does not merge (one the base lacks) the kernel would
	// list it as a name that cannot be opened. Empty: keep every
	// whiteout that may matter.
	Base string
	// Link hard-links non-directories from the layers instead of copying
	// them (result on the same filesystem as the layers).
	Link bool
	// Workers copying file contents in parallel (default: min(4, CPUs)).
	Workers int
	// WorkerThread, if set, runs first in each worker on a locked OS thread
	// that is never unlocked (it ends with the worker): for a caller that
	// works in a private mount namespace of its own thread and needs the
	// workers to join it (setns). An error fails the copy.
	WorkerThread func() error
	// Progress, if set, is called from one goroutine about every
	// ProgressEvery and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is how far a Squash or Copy got.
type Progress struct {
	Files, TotalFiles int64 // non-directories
	Bytes, TotalBytes int64 // regular file bytes (apparent size)
}

// Stats is what a Squash or Copy wrote.
type Stats struct {
	Dirs, Files, Whiteouts int64
	Bytes                  int64
}

// Squash writes the merged view of layers (bottom to top) into dst, which
// must be missing or an empty directory. On error dst is left partly
// written; the caller removes it (the layers are never modified).
//
// The merged view is walked and written as it is found (directories
// parents first, names sorted): memory does not grow with the number of
// files. With Progress the tree is walked once more before, to count.
func Squash(dst string, layers []string, opt Options) (Stats, error) {
	w := &walker{keepWhiteouts: opt.KeepWhiteouts, base: opt.Base}
	return execute(dst, w, layers, opt, true)
}

// Copy copies the tree src to dst like `cp -a`: everything, overlay
// whiteouts and xattrs included, nothing interpreted. dst must be missing
// or an empty directory.
func Copy(dst, src string, opt Options) (Stats, error) {
	w := &walker{raw: true}
	opt.Link = false
	return execute(dst, w, []string{src}, opt, false)
}

func prepareDst(dst string) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return err
		}
		names, err := readNames(dst)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return &os.PathError{Op: "squash into", Path: dst, Err: unix.ENOTEMPTY}
		}
	}
	return nil
}

type inodeKey struct{ dev, ino uint64 }

// outDir is a directory of the result being written: its metadata is set
// once everything in it is written (pending counts the walk itself, the
// files queued for the workers and the subdirectories not yet finished),
// so that creating entries does not disturb times and read-only modes do
// not block writing.
type outDir struct {
	parent  *outDir
	rel     string
	m       meta
	layer   uint16
	opaque  bool
	pending atomic.Int32
}

// linkFirst is the first name of a hard-linked inode met in the result:
// the later names are linked to it once it is written (done closed, ok
// set). left counts the names still expected.
type linkFirst struct {
	path string
	done chan struct{}
	ok   bool
	left uint32
}

// job is one regular file for a worker: copied, or (to set) hard-linked to
// an earlier name.
type job struct {
	dst, src string
	m        meta
	dir      *outDir
	first    *linkFirst // this is the first name of a hard-linked inode
	to       *linkFirst // link to this first name instead of copying
}

var errStopped = errors.New("layer: stopped after a failure")

func execute(dst string, w *walker, layers []string, opt Options, skipOverlay bool) (st Stats, retErr error) {
	if err := prepareDst(dst); err != nil {
		return st, err
	}
	var totalFiles, totalBytes int64
	if opt.Progress != nil {
		// Count first (the totals of the progress): the same walk,
		// nothing kept.
		cw := *w
		cw.visit = func(e *entry) error {
			if e.kind == opFile {
				totalFiles++
				if e.m.typ() == unix.S_IFREG {
					totalBytes += e.m.size
				}
			}
			return nil
		}
		cw.leave = nil
		if err := cw.walk(layers); err != nil {
			return st, err
		}
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = min(4, runtime.NumCPU())
	}
	var files, bytes atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	var failed atomic.Bool
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		failed.Store(true)
	}

	// progress reporter
	stopProgress := func() {}
	report := func() {}
	if opt.Progress != nil {
		report = func() {
			opt.Progress(Progress{Files: files.Load(), TotalFiles: totalFiles, Bytes: bytes.Load(), TotalBytes: totalBytes})
		}
		every := opt.ProgressEvery
		if every <= 0 {
			every = 250 * time.Millisecond
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					report()
				}
			}
		}()
		stopProgress = func() { close(done); wg.Wait() }
	}
	defer func() {
		stopProgress()
		report()
	}()

	// finish sets a directory's metadata once nothing in it is pending,
	// then releases its parent; from the walk or from a worker.
	var release func(d *outDir)
	release = func(d *outDir) {
		for d != nil && d.pending.Add(-1) == 0 {
			if !failed.Load() {
				if err := finishDir(filepath.Join(dst, d.rel), w.src(d.layer, d.rel), d, skipOverlay); err != nil {
					fail(err)
				}
			}
			d = d.parent
		}
	}

	jobs := make(chan job, 64)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready := true
			if opt.WorkerThread != nil {
				runtime.LockOSThread() // never unlocked: the thread ends with the worker
				if err := opt.WorkerThread(); err != nil {
					fail(err)
					ready = false
				}
			}
			buf := make([]byte, 128<<10)
			for j := range jobs {
				ok := false
				if ready && !failed.Load() {
					var err error
					if j.to != nil {
						<-j.to.done
						if j.to.ok {
							err = os.Link(j.to.path, j.dst)
							ok = err == nil
						}
					} else {
						_, err = copyRegular(j.dst, j.src, &j.m, skipOverlay, buf)
						ok = err == nil
					}
					if err != nil {
						fail(err)
					} else if ok {
						files.Add(1)
						bytes.Add(j.m.size)
					}
				}
				if j.first != nil {
					j.first.ok = ok
					close(j.first.done)
				}
				release(j.dir)
			}
		}()
	}

	firsts := map[inodeKey]*linkFirst{} // hard-linked inodes whose other names are still to come
	var cur *outDir
	w.visit = func(e *entry) error {
		if failed.Load() {
			return errStopped
		}
		path := filepath.Join(dst, e.rel)
		var err error
		switch e.kind {
		case opDir:
			if e.rel != "" {
				if err := os.Mkdir(path, 0o700); err != nil {
					return err
				}
			}
			d := &outDir{parent: cur, rel: e.rel, m: e.m, layer: e.layer, opaque: e.opaque}
			d.pending.Store(1) // the walk, until it leaves
			if cur != nil {
				cur.pending.Add(1)
			}
			cur = d
			st.Dirs++
		case opWhiteout:
			err = MakeWhiteout(path)
			st.Whiteouts++
		case opFile:
			st.Files++
			src := w.src(e.layer, e.rel)
			if opt.Link {
				if err = os.Link(src, path); err == nil {
					files.Add(1)
					if e.m.typ() == unix.S_IFREG {
						bytes.Add(e.m.size)
					}
				}
				break
			}
			var first *linkFirst
			if e.m.nlink > 1 {
				k := inodeKey{e.dev, e.ino}
				if f, ok := firsts[k]; ok {
					if f.left--; f.left == 0 {
						delete(firsts, k)
					}
					cur.pending.Add(1)
					jobs <- job{dst: path, m: e.m, dir: cur, to: f}
					break
				}
				first = &linkFirst{path: path, done: make(chan struct{}), left: e.m.nlink - 1}
				firsts[k] = first
			}
			if e.m.typ() == unix.S_IFREG {
				cur.pending.Add(1)
				jobs <- job{dst: path, src: src, m: e.m, dir: cur, first: first}
				break
			}
			if err = copySpecial(path, src, &e.m, skipOverlay); err == nil {
				files.Add(1)
			}
			if first != nil {
				first.ok = err == nil
				close(first.done)
			}
		}
		return err
	}
	w.leave = func() error {
		d := cur
		cur = d.parent
		release(d)
		if failed.Load() {
			return errStopped
		}
		return nil
	}
	if err := w.walk(layers); err != nil && !errors.Is(err, errStopped) {
		fail(err) // the workers skip what is still queued
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return st, firstErr
	}
	st.Bytes = bytes.Load()
	return st, nil
}

// finishDir sets a written directory's xattrs, opaque mark, owner, mode
// and times.
func finishDir(path, src string, d *outDir, skipOverlay bool) error {
	if err := copyXattrs(path, src, skipOverlay); err != nil {
		return err
	}
	if d.opaque {
		if err := SetOpaque(path); err != nil {
			return err
		}
	}
	if err := setOwnerMode(path, &d.m); err != nil {
		return err
	}
	return setTimes(path, &d.m)
}

// copySpecial creates a symlink, device node, fifo or socket like src.
func copySpecial(dst, src string, st *meta, skipOverlay bool) error {
	switch st.typ() {
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default:
		if err := unix.Mknod(dst, st.mode, int(st.rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	if err := copyXattrs(dst, src, skipOverlay); err != nil {
		return err
	}
	if err := setOwnerMode(dst, st); err != nil {
		return err
	}
	return setTimes(dst, st)
}

// copyRegular copies a regular file's contents (holes kept), xattrs,
// owner, mode and times. It returns the apparent size copied. Raw file
// descriptors: os.OpenFile costs several fcntl/epoll calls per file.
func copyRegular(dst, src string, st *meta, skipOverlay bool, buf []byte) (int64, error) {
	in, err := unix.Open(src, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: src, Err: err}
	}
	defer unix.Close(in)
	out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, &os.PathError{Op: "create", Path: dst, Err: err}
	}
	if err := copyData(out, in, st.size, st.blocks*512 < st.size, buf); err != nil {
		unix.Close(out)
		return 0, &os.PathError{Op: "copy to", Path: dst, Err: err}
	}
	if err := copyXattrs(dst, src, skipOverlay); err != nil {
		unix.Close(out)
		return 0, err
	}
	if err := unix.Fchown(out, int(st.uid), int(st.gid)); err != nil && !(errors.Is(err, unix.EPERM) && os.Geteuid() != 0) {
		unix.Close(out)
		return 0, &os.PathError{Op: "fchown", Path: dst, Err: err}
	}
	if err := unix.Fchmod(out, st.mode&0o7777); err != nil {
		unix.Close(out)
		return 0, &os.PathError{Op: "fchmod", Path: dst, Err: err}
	}
	ts := []unix.Timespec{st.atim, st.mtim}
	if err := unix.UtimesNanoAt(out, "", ts, unix.AT_EMPTY_PATH); err != nil {
		if err := setTimes(dst, st); err != nil {
			unix.Close(out)
			return 0, err
		}
	}
	if err := unix.Close(out); err != nil {
		return 0, &os.PathError{Op: "close", Path: dst, Err: err}
	}
	return st.size, nil
}

// copyData copies size bytes; sparse files are copied extent by extent
// (SEEK_DATA/SEEK_HOLE) and the holes left unwritten.
func copyData(out, in int, size int64, sparse bool, buf []byte) error {
	if size == 0 {
		return nil
	}
	if !sparse {
		return copyRange(out, in, 0, size, buf)
	}
	var off int64
	for off < size {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole left
		}
		if err != nil {
			return copyRange(out, in, 0, size, buf) // no SEEK_DATA: copy everything
		}
		hole, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if err := copyRange(out, in, data, hole-data, buf); err != nil {
			return err
		}
		off = hole
	}
	return unix.Ftruncate(out, size)
}

var noCopyFileRange atomic.Bool

// copyRange copies n bytes at off from in to out at the same offset, with
// copy_file_range where the kernel can (same filesystem), else
// pread/pwrite. Once copy_file_range has failed with EXDEV it is not tried
// again in this process.
func copyRange(out, in int, off, n int64, buf []byte) error {
	if !noCopyFileRange.Load() {
		roff, woff := off, off
		left := n
		for left > 0 {
			c, err := unix.CopyFileRange(in, &roff, out, &woff, int(min(left, 1<<30)), 0)
			if err != nil {
				if left == n && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
					errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)) {
					if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) {
						noCopyFileRange.Store(true)
					}
					break // fall back below
				}
				return err
			}
			if c == 0 {
				return io.ErrUnexpectedEOF
			}
			left -= int64(c)
		}
		if left == 0 {
			return nil
		}
	}
	for done := int64(0); done < n; {
		want := min(int64(len(buf)), n-done)
		r, err := unix.Pread(in, buf[:want], off+done)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if r == 0 {
			return io.ErrUnexpectedEOF
		}
		for w := 0; w < r; {
			k, err := unix.Pwrite(out, buf[w:r], off+done+int64(w))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			w += k
		}
		done += int64(r)
	}
	return nil
}
