package mountset

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/image/ext2"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/loop"
)

// Eject never lies. The card's writes reach the image file only when the
// kernel writes them back, and writeback can fail (the image's host
// filesystem is full: a sparse image grows as the card fills). syncfs
// reports such an error once, to whoever asks first; a second eject would
// find nothing to flush and call the card safe. So a failed flush is
// remembered: in the mount record (which eject then keeps, even after
// unmounting), and on the card itself (its superblock gets the "errors"
// state bit once it is unmounted), and every eject says what was not
// written until the next ovmount has checked the card with e2fsck.

// maxUnwritten bounds the files a FlushFailure names.
const maxUnwritten = 100

// FlushFailure is a failed flush of the card: when, the error, and the
// files on the card whose writes were lost (paths on the card mount; More
// counts those beyond the list).
type FlushFailure struct {
	At        time.Time `json:"at"`
	Error     string    `json:"error"`
	Unwritten []string  `json:"unwritten,omitempty"`
	More      int       `json:"more,omitempty"`
	// Metadata says the card's filesystem on the image is inconsistent
	// (e2fsck -n found problems there, or it could not be mounted): its
	// own structures were not all written either.
	Metadata bool `json:"metadata,omitempty"`
	// Marked says the card's superblock now carries the "errors" bit
	// (written into the image once the card was unmounted).
	Marked bool `json:"marked,omitempty"`
}

// FlushError is eject's report of a card that was not completely
// written: it is never "safe to remove".
type FlushError struct {
	Image     string
	Failure   FlushFailure
	Tree      string // where the layers live, to show files by their path in the root
	CardMount string
	Unmounted bool // eject went on and unmounted the card (an earlier eject reported the failure)
	// OverlaysDown: the flush after unmounting the overlays failed; the
	// card itself is still mounted.
	OverlaysDown bool
	Gone         bool // nothing is mounted; the record only remembers
	FsckHint     string
}

func (e *FlushError) Error() string {
	f := e.Failure
	var what string
	switch n := len(f.Unwritten) + f.More; {
	case n == 0:
		what = "which files lost writes is not known"
	default:
		what = fmt.Sprintf("%d file(s) were not written: %s", n, strings.Join(displayPaths(e.CardMount, f.Unwritten), ", "))
		if f.More > 0 {
			what += fmt.Sprintf(" and %d more", f.More)
		}
	}
	if f.Metadata {
		what += ", and the card's filesystem on the image is inconsistent (its own structures were not all written either)"
	}
	head := fmt.Sprintf("flushing the card %s failed (%s, %s), so it is NOT safe to remove: %s",
		e.Image, f.Error, f.At.Local().Format("2006-01-02 15:04:05"), what)
	switch {
	case e.Gone:
		marked := ""
		if e.Failure.Marked {
			marked = " (its superblock is marked)"
		}
		return fmt.Sprintf("%s; the card is not mounted; the next ovmount checks it with e2fsck (%s) before using it%s", head, e.FsckHint, marked)
	case e.Unmounted:
		return fmt.Sprintf("%s; the card is unmounted and detached, and marked for checking: the next ovmount checks it with e2fsck (%s) before using it; reinstall what those files belong to", head, e.FsckHint)
	}
	what = "nothing was unmounted"
	if e.OverlaysDown {
		what = "the overlays are unmounted but the card is not"
	}
	return fmt.Sprintf("%s; %s: those files still read correctly on %s until it is unmounted, so copy what you need elsewhere now; free space on the image's filesystem, then run eject again (it will unmount the card and mark it for checking)", head, what, e.CardMount)
}

func (e *FlushError) Unwrap() error { return ErrNotFlushed }

// ErrNotFlushed is wrapped by every FlushError.
var ErrNotFlushed = errors.New("the card was not completely written")

// displayPaths shows files on the card by their place in the root where
// they are in a layer tree ("/usr/local/x (layer 0002)").
func displayPaths(cardMount string, ps []string) []string {
	layers := card.New(cardMount).LayersDir() + "/"
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if rest, ok := strings.CutPrefix(p, layers); ok {
			id, inTree, _ := strings.Cut(rest, "/")
			if t, ok := strings.CutPrefix(inTree, "tree/"); ok {
				out = append(out, "/"+t+" (layer "+id+")")
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// findUnwritten names the files whose contents the image does not hold:
// every regular file on the card changed since the card was mounted
// (ctime, one-second ext2 resolution) is compared, byte for byte, with
// the same file read back from the image itself, through a second,
// read-only loop device mounted read-only in a private mount namespace
// of one thread. That catches what per-file error reports miss (a
// file's block map is the filesystem's own metadata, written through
// the block device: data on the image, unreachable). fsBad is set when
// the image cannot be mounted, or e2fsck -n finds its filesystem
// inconsistent. Only called after a failed flush, while the card is
// still mounted, so its page cache still has what was meant.
func findUnwritten(rec *Record) (list []string, more int, fsBad bool) {
	since := rec.MountedAt.Truncate(time.Second)
	var cands []string
	filepath.WalkDir(rec.CardMount, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && !time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)).Before(since) {
			cands = append(cands, p)
		}
		return nil
	})
	if prog, err := findE2fsck(); err == nil {
		cmd := exec.Command(prog, "-fn", fmt.Sprintf("%s?offset=%d", rec.Image, rec.Offset))
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		if cmd.Run() != nil {
			fsBad = true
		}
	}
	bad, err := compareWithImage(rec, cands)
	if err != nil {
		// Not readable back at all: every changed file counts.
		return capList(cands), max(0, len(cands)-maxUnwritten), true
	}
	list = capList(bad)
	return list, max(0, len(bad)-maxUnwritten), fsBad
}

func capList(ps []string) []string {
	if len(ps) > maxUnwritten {
		return ps[:maxUnwritten]
	}
	return ps
}

// compareWithImage returns those of files (paths on the card mount)
// whose contents differ on the image.
func compareWithImage(rec *Record, files []string) ([]string, error) {
	if len(files) == 0 {
		return nil, nil
	}
	dev, err := loop.Attach(rec.Image, loop.Options{Offset: rec.Offset, SizeLimit: rec.SizeLimit, ReadOnly: true, Autoclear: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		dev.Close()
		loop.WaitDetached(dev, detachTimeout)
	}()
	// The card's files are read through a descriptor of its mount taken
	// here, so that the private namespace below can drop its copies of
	// the card and the overlays at once: a copy would keep the card's
	// filesystem (and its loop device) alive after eject unmounts it.
	cardFD, err := unix.Open(rec.CardMount, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(cardFD)
	type result struct {
		bad []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		// This thread gets its own mount namespace and ends with it:
		// the read-only snapshot is never visible to anyone else.
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNS); r.err != nil {
			return
		}
		if r.err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); r.err != nil {
			return
		}
		for i := len(rec.Overlays) - 1; i >= 0; i-- {
			unix.Unmount(rec.Overlays[i].Target, unix.MNT_DETACH)
		}
		if r.err = unix.Unmount(rec.CardMount, unix.MNT_DETACH); r.err != nil {
			return
		}
		tmp, err := os.MkdirTemp("", "ovpkg-flushcheck-")
		if r.err = err; err != nil {
			return
		}
		defer os.Remove(tmp)
		fstype := "ext2"
		if r.err = unix.Mount(dev.Path, tmp, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); r.err == unix.ENODEV {
			r.err = unix.Mount(dev.Path, tmp, "ext4", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}
		if r.err != nil {
			return
		}
		defer unix.Unmount(tmp, 0)
		for _, f := range files {
			rel, _ := filepath.Rel(rec.CardMount, f)
			if !sameContent(cardFD, rel, filepath.Join(tmp, rel)) {
				r.bad = append(r.bad, f)
			}
		}
	}()
	r := <-done
	return r.bad, r.err
}

// sameContent compares the file rel below the directory dirFD with the
// file b, byte for byte.
func sameContent(dirFD int, rel, b string) bool {
	fd, err := unix.Openat(dirFD, rel, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	fa := os.NewFile(uintptr(fd), rel)
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false
	}
	defer fb.Close()
	sa, err1 := fa.Stat()
	sb, err2 := fb.Stat()
	if err1 != nil || err2 != nil || sa.Size() != sb.Size() {
		return false
	}
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea
		}
		if ea != nil || eb != nil {
			return false
		}
	}
}

// noteFlushFailure records a failed flush in rec (merging with an earlier
// one) and writes the record.
func noteFlushFailure(runDir string, rec *Record, cause error) error {
	list, more, fsBad := findUnwritten(rec)
	f := rec.FlushFailed
	if f == nil {
		f = &FlushFailure{At: time.Now().UTC(), Error: errText(cause)}
	}
	seen := map[string]bool{}
	for _, p := range f.Unwritten {
		seen[p] = true
	}
	for _, p := range list {
		switch {
		case seen[p]:
		case len(f.Unwritten) < maxUnwritten:
			f.Unwritten = append(f.Unwritten, p)
		default:
			f.More++
		}
	}
	f.More += more
	if fsBad {
		f.Metadata = true
	}
	rec.FlushFailed = f
	return writeRecord(runDir, rec)
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// markUnflushed sets the "errors" state bit in the superblock of the
// card's filesystem inside the image file (open as f; offset is the
// partition's start) and flushes the image, so that every later mount,
// here or on another machine, checks the card first. Called only while
// the card is not mounted (the kernel writes its own superblock state at
// unmount).
func markUnflushed(f *os.File, offset int64) error {
	if err := faults.Fail("mark-unflushed"); err != nil {
		return fmt.Errorf("marking the card for checking: %w", err)
	}
	b := make([]byte, ext2.SuperblockSize)
	if _, err := f.ReadAt(b, offset+ext2.SuperblockOffset); err != nil {
		return fmt.Errorf("marking the card for checking: reading its superblock: %w", err)
	}
	if err := ext2.MarkErrors(b); err != nil {
		return fmt.Errorf("marking the card for checking: %w", err)
	}
	if _, err := f.WriteAt(b, offset+ext2.SuperblockOffset); err != nil {
		return fmt.Errorf("marking the card for checking: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("marking the card for checking: %w", err)
	}
	return nil
}

// hostSpaceWarnings compares what the image file could still grow by
// (the holes of a sparse image: blocks the card may write that the host
// filesystem has not allocated yet) with the free space of the
// filesystem it lives on. When the card could outgrow it, writeback
// fails once the host is full and data is lost (eject then says which
// files); ovmount warns then, naming both figures and the fix. It does
// not refuse: the card's contents stay readable and removing packages
// frees space.
func hostSpaceWarnings(f *os.File, path string) []string {
	var st unix.Stat_t
	var sfs unix.Statfs_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || unix.Fstatfs(int(f.Fd()), &sfs) != nil {
		return nil
	}
	holes := st.Size - st.Blocks*512
	avail := int64(sfs.Bavail) * int64(sfs.Bsize)
	if holes <= 0 || avail >= holes {
		return nil
	}
	return []string{fmt.Sprintf("%s can still grow by %s (it is sparse) but its filesystem has only %s free: writes beyond that are lost when the card is flushed, and eject will say which; free space there, or allocate the image in full now: fallocate -l %d %s",
		path, units.Bytes(holes), units.Bytes(avail), st.Size, path)}
}
