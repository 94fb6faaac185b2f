package mountset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/internal/selfexec"
	"github.com/ovpkg/ovpkg/loop"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/trust"
)

// ReexecMarker is the environment variable selfexec sets in the in-memory
// copy of the binary.
const ReexecMarker = "OVPKG_REEXECUTED"

// BusyError lists the processes that hold the mounts eject or uovmount
// would remove. Its message has one part per process (busy.Summarize);
// the commands print Header and then Lines, one line each.
type BusyError struct {
	What    string // "the overlays are", "the card is"
	Holders []busy.Holder
}

func (e *BusyError) Error() string {
	return e.Header() + ": " + strings.Join(e.Lines(), "; ")
}

// Header is the refusal without the processes: "the card is in use by 2
// processes; nothing was unmounted (...)".
func (e *BusyError) Header() string {
	n := len(pids(e.Holders))
	who := "1 process"
	if n != 1 {
		who = fmt.Sprintf("%d processes", n)
	}
	return fmt.Sprintf("%s %s by %s; nothing was unmounted (stop them, or leave those directories, and try again)", e.What, ErrBusy, who)
}

// Lines is one line per holding process: "PID 1234 (sleep): cwd
// /usr/local, 16 mappings under /usr/lib".
func (e *BusyError) Lines() []string { return busy.Lines(e.Holders) }

// Processes is the holders grouped by process (for --json).
func (e *BusyError) Processes() []busy.Process { return busy.Summarize(e.Holders) }

func (e *BusyError) Unwrap() error { return ErrBusy }

// checkBusy refuses when something holds one of the mounts at targets
// (whose devices are devs). It first asks the kernel, mount by mount and
// without side effects, whether each one is in use (umount2 with
// MNT_EXPIRE: EBUSY when referenced, else EAGAIN and only an expiry
// mark); only when one is does it scan /proc to name the holders, which
// costs a stat of every open file of every process.
func checkBusy(opt Options, targets []string, devs []uint64, what string) error {
	if err := otherMounts(targets, devs, what); err != nil {
		return err
	}
	if !anyBusy(targets) {
		return nil
	}
	hs, err := busy.ScanExcept(opt.procDir(), devs, []int{os.Getpid()})
	if err != nil {
		return fmt.Errorf("looking for processes that use %s: %w", what, err)
	}
	if len(hs) > 0 {
		return &BusyError{What: what, Holders: hs}
	}
	return nil
}

// otherMounts refuses when the filesystem of one of devs is also mounted
// somewhere other than targets (a bind mount of /usr/local, a second
// mount of the card): unmounting ours would leave the card's filesystem
// alive and the loop device attached.
func otherMounts(targets []string, devs []uint64, what string) error {
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, t := range targets {
		ours[filepath.Clean(t)] = true
	}
	want := map[uint64]bool{}
	for _, d := range devs {
		want[d] = true
	}
	var extra []string
	for _, m := range tab {
		if want[mount.Dev(m)] && !ours[m.Mountpoint] {
			extra = append(extra, m.Mountpoint)
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("%s %w: also mounted on %s (a bind mount?); unmount that first, nothing was unmounted",
			what, ErrBusy, strings.Join(extra, ", "))
	}
	return nil
}

// anyBusy probes each target with umount2(MNT_EXPIRE). An answer other
// than EAGAIN (free) or EBUSY (in use) counts as "maybe", so the caller
// scans.
func anyBusy(targets []string) bool {
	for _, t := range targets {
		err := unix.Unmount(t, unix.MNT_EXPIRE)
		for err == unix.EINTR {
			err = unix.Unmount(t, unix.MNT_EXPIRE)
		}
		if err != unix.EAGAIN {
			return true
		}
	}
	return false
}

// leaveMounts makes sure the running program does not pin what it is
// about to unmount: when its executable lies on one of devs or under one
// of the overlaid targets, it re-executes from a memfd copy (this call
// then does not return); otherwise it only moves its working directory
// to /.
func leaveMounts(devs []uint64, targets []string) error {
	if selfexec.Reexecuted(ReexecMarker) {
		os.Unsetenv(ReexecMarker) // not inherited by anything this process starts
		return unix.Chdir("/")
	}
	force := false
	if exe, err := os.Readlink("/proc/self/exe"); err == nil {
		for _, t := range targets {
			if t != "/" && strings.HasPrefix(exe, filepath.Clean(t)+"/") {
				force = true
			}
		}
	}
	if err := selfexec.FromMemory(ReexecMarker, devs, force); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// preflight reads the record without the lock, for the re-exec decision.
func preflight(opt Options) (*env, *Record, mount.Table, error) {
	e, err := loadEnv(opt)
	if err != nil {
		return nil, nil, nil, err
	}
	rec, err := readRecord(e.runDir)
	if err != nil {
		return nil, nil, nil, err
	}
	if rec == nil {
		return nil, nil, nil, ErrNotMounted
	}
	tab, err := mount.Self()
	if err != nil {
		return nil, nil, nil, err
	}
	return e, rec, tab, nil
}

// lockedState takes the ovpkg lock and reads the record and the mount
// table again under it (another command may have changed them since
// preflight). A record whose mounts are all gone here is left alone when
// its loop device still backs its image (ErrElsewhere: another mount
// namespace mounted it), kept when it remembers a failed flush (a
// *FlushError with Gone set), and otherwise removed and reported as
// ErrNotMounted. On success the caller must call unlock.
func lockedState(e *env) (unlock func(), rec *Record, tab mount.Table, up []overlay.Mount, err error) {
	release, err := lockDir(e.runDir)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	if rec, err = readRecord(e.runDir); err != nil {
		return nil, nil, nil, nil, err
	}
	if rec == nil {
		return nil, nil, nil, nil, ErrNotMounted
	}
	if tab, err = mount.Self(); err != nil {
		return nil, nil, nil, nil, err
	}
	up = rec.state(tab)
	if rec.State == StateGone {
		if err := rec.elsewhere(e.runDir); err != nil {
			return nil, nil, nil, nil, err
		}
		if rec.FlushFailed != nil {
			return nil, nil, nil, nil, rec.flushError(true, false)
		}
		if err := removeRecord(e.runDir); err != nil {
			return nil, nil, nil, nil, err
		}
		return nil, nil, nil, nil, fmt.Errorf("%w (the record in %s named %s, but it is no longer mounted)", ErrNotMounted, e.runDir, rec.Image)
	}
	return release, rec, tab, up, nil
}

// flushError is the report of r's failed flush.
func (r *Record) flushError(gone, unmounted bool) *FlushError {
	return &FlushError{Image: r.Image, Failure: *r.FlushFailed, CardMount: r.CardMount, Gone: gone, Unmounted: unmounted,
		FsckHint: fmt.Sprintf("or by hand: e2fsck -f '%s?offset=%d'", r.Image, r.Offset)}
}

func targets(rec *Record) []string {
	var ts []string
	for _, m := range rec.Overlays {
		ts = append(ts, m.Target)
	}
	return ts
}

// Down is uovmount: unmount the recorded overlays, newest first; the card
// stays mounted. It refuses, changing nothing, while a process holds a
// file on an overlay.
func Down(opt Options) (*Record, error) {
	e, rec, tab, err := preflight(opt)
	if err != nil {
		return nil, err
	}
	if err := leaveMounts(OverlayDevs(tab, rec.Overlays), targets(rec)); err != nil {
		return nil, err
	}
	unlock, rec, tab, up, err := lockedState(e)
	if err != nil {
		return nil, err
	}
	defer unlock()
	still, err := pruneLocked(opt, e.runDir, tab, rec)
	if err != nil {
		return nil, err
	}
	for _, l := range still {
		printf(opt, "%s\n", l)
	}
	if len(up) == 0 {
		printf(opt, "no overlays are mounted; the card stays on %s\n", rec.CardMount)
		return rec, nil
	}
	ovOnly := &Record{Overlays: up}
	if err := checkBusy(opt, targets(ovOnly), ovOnly.devices(tab), "the overlays are"); err != nil {
		return nil, err
	}
	if err := overlay.Unstack(up); err != nil {
		return nil, err
	}
	for i := len(up) - 1; i >= 0; i-- {
		printf(opt, "unmounted %s\n", up[i].Target)
	}
	rec.State = StateCardOnly
	return rec, nil
}

// Eject unmounts the overlays and the card, flushes it, confirms the loop
// device is gone and only then says the card is safe to remove. While any
// process (other than this one) holds a file, directory, root or mapping
// on an overlay or on the card, it refuses, naming each one, and leaves
// everything mounted; so it does while an old overlay that a restack
// detached is still held (Record.Detached). It never unmounts lazily.
//
// The card is flushed before anything is unmounted: when that fails
// (writeback to the image failed, e.g. its host filesystem is full),
// eject names the files that were not written, remembers the failure in
// the record and changes nothing, so they can still be read and copied.
// An eject after that unmounts and detaches the card, marks it for
// checking (the superblock's "errors" bit) and still says it is NOT
// safe; so does every eject until the next ovmount has checked it.
func Eject(opt Options) (*Record, error) {
	e, rec, tab, err := preflight(opt)
	if err != nil {
		return nil, err
	}
	if err := leaveMounts(rec.devices(tab), targets(rec)); err != nil {
		return nil, err
	}
	unlock, rec, tab, up, err := lockedState(e)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Old overlays a restack detached while they were held keep the card's
	// filesystem (and its loop device) alive out of sight of the probe
	// below: refuse while any is held, naming the holders.
	still, err := pruneLocked(opt, e.runDir, tab, rec)
	if err != nil {
		return nil, err
	}
	if len(still) > 0 {
		return nil, lingeringError(still)
	}
	ts := targets(&Record{Overlays: up})
	cardMnt := tab.Lookup(rec.CardMount)
	cardUp := cardMnt != nil && cardMnt.Source == rec.Loop
	if cardUp {
		ts = append(ts, rec.CardMount)
	}
	if err := checkBusy(opt, ts, rec.devices(tab), "the card is"); err != nil {
		return nil, err
	}
	// Flush first, with everything still mounted. After a failure an
	// earlier eject reported, eject goes on: the user was told what was
	// lost and wants the card out.
	reported := rec.FlushFailed != nil
	var contents *trust.Card // what is on the card, for the host's memory
	if cardUp {
		if err := flushCard(e.runDir, rec); err != nil && !reported {
			return nil, err
		}
	}
	if err := overlay.Unstack(up); err != nil {
		return nil, err
	}
	for i := len(up) - 1; i >= 0; i-- {
		printf(opt, "unmounted %s\n", up[i].Target)
	}
	if cardUp {
		// Unmounting the overlays may have written (their work
		// directories): flush again.
		if err := flushCard(e.runDir, rec); err != nil && !reported {
			var fe *FlushError
			if errors.As(err, &fe) {
				fe.OverlaysDown = true
			}
			return nil, err
		}
		if rec.FlushFailed == nil {
			contents = cardContents(opt, e, rec)
		}
		if err := mount.Unmount(rec.CardMount, 0); err != nil {
			return nil, fmt.Errorf("the overlays are unmounted but the card is not: %w", err)
		}
		printf(opt, "unmounted %s\n", rec.CardMount)
	}
	// The device was attached with autoclear: the kernel detaches it when
	// the card mount goes. Confirm, and clear it ourselves if it lingers
	// (Device.Detach clears it only while it still backs our image).
	d := &loop.Device{Path: rec.Loop}
	if x, err := loop.Status(rec.Loop); err == nil && rec.backs(x) {
		d = x
	}
	if d.Backing != "" {
		if err := loop.WaitDetached(d, detachTimeout); err != nil {
			if derr := d.Detach(); derr != nil && !errors.Is(derr, unix.ENXIO) {
				return nil, fmt.Errorf("loop device %s is still attached to %s: %w", d.Path, rec.Image, derr)
			}
			if err := loop.WaitDetached(d, detachTimeout); err != nil {
				why := whereMounted(*d)
				if why == "" {
					why = "held open by the kernel"
					if hs := blockHolders(opt.procDir(), d.Path); len(hs) > 0 {
						why = "held open by " + strings.Join(busy.Lines(hs), "; ")
					}
				}
				return nil, fmt.Errorf("loop device %s is still attached to %s (%s), so the card is NOT safe to remove: %w", d.Path, rec.Image, why, err)
			}
		}
	}
	if rec.FlushFailed != nil {
		// Not safe, ever, until checked: mark the card itself, keep the
		// record (it names what was lost), and say it again.
		if err := markImage(rec); err != nil {
			return nil, fmt.Errorf("%w; %v (the record %s still remembers it; the next ovmount marks and checks the card)", rec.flushError(false, true), err, recordPath(e.runDir))
		}
		rec.FlushFailed.Marked = true
		if err := writeRecord(e.runDir, rec); err != nil {
			return nil, fmt.Errorf("%w; %v", rec.flushError(false, true), err)
		}
		return nil, rec.flushError(false, true)
	}
	// A clean flush and unmount: remember the card as this host leaves
	// it (only when it was trusted on this mount).
	rememberCard(opt, e, rec, contents)
	if err := removeRecord(e.runDir); err != nil {
		return nil, err
	}
	rec.State = StateGone
	printf(opt, "card is safe to remove\n")
	return rec, nil
}

// blockHolders finds the processes that have the block device at path
// open.
func blockHolders(procDir, path string) []busy.Holder {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return nil
	}
	hs, _ := busy.ScanExcept(procDir, []uint64{uint64(st.Rdev)}, []int{os.Getpid()})
	return hs
}

// backs reports whether loop device d is bound to r's image.
func (r *Record) backs(d *loop.Device) bool {
	if r.ImageDev != 0 || r.ImageIno != 0 {
		return d.Dev == r.ImageDev && d.Ino == r.ImageIno
	}
	var st unix.Stat_t
	return unix.Stat(r.Image, &st) == nil && d.Dev == uint64(st.Dev) && d.Ino == uint64(st.Ino)
}

// flushCard flushes the card filesystem (syncfs). A failure is recorded
// (noteFlushFailure: which files lost writes) and returned as a
// *FlushError; so is an earlier failure that is still remembered, when
// nothing is unmounted yet.
func flushCard(runDir string, rec *Record) error {
	err := syncCard(rec.CardMount)
	if err == nil {
		err = faults.Fail("eject-flush")
	}
	if err != nil {
		if nerr := noteFlushFailure(runDir, rec, err); nerr != nil {
			return fmt.Errorf("flushing the card failed, so it is NOT safe to remove (%v), and recording that failed too: %w", err, nerr)
		}
		return rec.flushError(false, false)
	}
	return nil
}

// markImage marks r's card (unmounted now) for checking, holding the
// image's lock meanwhile.
func markImage(r *Record) error {
	l, err := waitImageLock(r.Image)
	if err != nil {
		return fmt.Errorf("marking the card for checking: %w", err)
	}
	defer l.release()
	if (r.ImageDev != 0 || r.ImageIno != 0) && (l.dev != r.ImageDev || l.ino != r.ImageIno) {
		return fmt.Errorf("marking the card for checking: %s is no longer the file that was mounted", r.Image)
	}
	return markUnflushed(l.f, r.Offset)
}

// syncCard flushes the card filesystem (syncfs) and reports its error.
func syncCard(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}
