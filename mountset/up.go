package mountset

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/internal/undo"
	"github.com/ovpkg/ovpkg/loop"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
)

// CardFlags are the mount flags of the card filesystem itself: no access
// time writes (flash wear), and nothing on a card taken at face value when
// reached directly under MOUNTPOINT: no setuid, no device nodes, no
// execution. (These flags do not reach through the overlays; see the
// overlay package for what does.)
const CardFlags = unix.MS_NOATIME | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// CardData are the card filesystem's options: a filesystem error makes
// the card read-only instead of corrupting it further.
const CardData = "errors=remount-ro"

// detachTimeout bounds the wait for an autoclear loop device to go.
const detachTimeout = 10 * time.Second

// beforeOverlay is a test seam: tests of this package may make the i-th
// overlay fail. The commands never set it.
var beforeOverlay func(i int, m overlay.Mount) error

// Up is ovmount: attach and mount the card and stack the overlays, all or
// nothing. When the card is already mounted as recorded it changes
// nothing and returns the record with AlreadyMounted set; after uovmount
// (card still mounted) it stacks the overlays again. A card mounted by
// another namespace, config or RUN_DIR is refused, and nothing of that
// mount is touched (see onemount.go).
func Up(opt Options) (*Record, error) {
	e, err := loadEnv(opt)
	if err != nil {
		return nil, err
	}
	if e.cfgErr != nil {
		return nil, e.cfgErr
	}
	if e.image == "" {
		return nil, &config.Error{Path: e.cfgPath, Msg: config.KeyImage + " is not set (run mkoverlay, or add " + config.KeyImage + "=/path/to/card.img)"}
	}
	unlock, err := lockDir(e.runDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tab, err := mount.Self()
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(e.runDir)
	if err != nil {
		return nil, err
	}
	var flushed *FlushFailure // an earlier eject's failed flush, still unchecked
	if rec != nil {
		up := rec.state(tab)
		if rec.State == StateGone {
			// Nothing of it is mounted here: stale, unless its loop
			// device still backs its image (another namespace).
			if err := rec.elsewhere(e.runDir); err != nil {
				return nil, err
			}
		} else if rec.Image != e.image || rec.Root != e.root {
			return nil, fmt.Errorf("another card is mounted (%s over %s, record %s); eject it first", rec.Image, rec.Root, recordPath(e.runDir))
		}
		switch rec.State {
		case StateMounted:
			if opt.Trust && rec.NoSuid() {
				if err := approveMounted(opt, e, rec, tab); err != nil {
					return nil, err
				}
			} else {
				printf(opt, "%s is already mounted on %s with %d overlays; nothing changed\n", rec.Image, rec.CardMount, len(rec.Overlays))
			}
			rec.AlreadyMounted = true
			return rec, nil
		case StateCardOnly, StatePartial:
			return restack(opt, e, rec, tab, up)
		case StateGone:
			// The mounts went away without eject (umount by hand, a
			// namespace that died, or eject after a failed flush): start
			// afresh, checking the card first if a flush failed.
			flushed = rec.FlushFailed
		}
	}
	return upFresh(opt, e, tab, rec, flushed)
}

// upFresh attaches and mounts the card and stacks the overlays. Every
// step that changed something adds its undo to one list; on failure the
// list runs newest first (overlays are all-or-nothing themselves, then
// the card mount, then the loop device, through Device.Detach only) and
// the mount record goes last, and only when everything before it was
// undone, so that it keeps naming whatever is still mounted. stale is a
// record whose mounts are gone (removed once the image lock is held).
func upFresh(opt Options, e *env, tab mount.Table, stale *Record, flushed *FlushFailure) (_ *Record, retErr error) {
	if m := tab.Lookup(e.mountPoint); m != nil {
		return nil, fmt.Errorf("%s is already a mount point (%s %s), not one ovpkg recorded; unmount it or set %s", e.mountPoint, m.FSType, m.Source, config.KeyMountPoint)
	}
	if st, err := os.Stat(e.root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("root %s is not a directory", e.root)
	}
	dirs, err := OverlayDirs(e.dirsValue, e.root, e.mountPoint)
	if err != nil {
		return nil, err
	}

	// One card, one mount: the image's own lock, held from the checks
	// through attach and mount.
	img, err := lockImage(e.imagePath)
	if err != nil {
		return nil, err
	}
	defer img.release()
	// An image someone else attached (and maybe mounted, maybe in another
	// mount namespace) is not ours to check, repair or mount a second time.
	if ds, err := loop.LookupID(img.dev, img.ino); err == nil && len(ds) > 0 {
		return nil, attachedError(e.image, ds)
	}
	if flushed != nil && !flushed.Marked {
		// The eject that unmounted it could not flush it (and was stopped
		// before it marked the card): make sure the card says so before
		// it is checked (Inspect then asks for e2fsck).
		if err := markUnflushed(img.f, stale.Offset); err != nil {
			return nil, err
		}
	}
	// Validate the image before any ioctl.
	info, err := image.Inspect(e.imagePath)
	needFsck := false
	if err != nil {
		if info != nil && (errors.Is(err, image.ErrUnclean) || errors.Is(err, image.ErrFSErrors)) {
			needFsck = true
		} else {
			return nil, err
		}
	}
	if err := img.samePath(e.imagePath); err != nil {
		return nil, err
	}
	if e.uuid == "" && !opt.Trust {
		return nil, fmt.Errorf("%w: %s has no %s, so %s (UUID %s) cannot be checked; mount it anyway with --trust, or re-record it with mkoverlay", ErrUnknownImg, e.cfgPath, config.KeyUUID, e.image, info.UUID)
	}
	if e.uuid != "" && !strings.EqualFold(e.uuid, info.UUID) {
		if !opt.Trust {
			return nil, fmt.Errorf("%w: %s has filesystem UUID %s but %s expects %s; a card ovpkg did not make is refused (mount it anyway with --trust)", ErrUnknownImg, e.image, info.UUID, e.cfgPath, e.uuid)
		}
		printf(opt, "warning: %s has UUID %s, not %s; mounting it because of --trust\n", e.image, info.UUID, e.uuid)
	}

	if needFsck {
		if err := fsck(opt, e, info); err != nil {
			return nil, err
		}
	}
	// A stale record goes only now: one that remembers a failed flush
	// stays until the check above has passed.
	if stale != nil {
		if err := removeRecord(e.runDir); err != nil {
			return nil, err
		}
		if flushed != nil {
			checked := "was checked: its filesystem is consistent"
			if opt.Force {
				checked = "was NOT checked (--force)"
			}
			printf(opt, "the card whose flush failed at %s %s; the %d file(s) that eject named were not written\n",
				flushed.At.Local().Format("2006-01-02 15:04:05"), checked, len(flushed.Unwritten)+flushed.More)
		}
	}
	warnings := hostSpaceWarnings(img.f, e.imagePath)
	for _, w := range warnings {
		printf(opt, "warning: %s\n", w)
	}

	// The superblock as it is before this mount changes it: what the
	// host's memory of the card is compared with (gateCard).
	super, err := readSuper(img.f, info.PartStart)
	if err != nil {
		return nil, err
	}

	var undo undo.List
	defer func() {
		if retErr != nil {
			retErr = undoJoin(retErr, &undo)
		}
	}()
	// Direct I/O keeps the image file out of the page cache: without it
	// every block read through the card is cached twice (once as the card
	// filesystem's, once as the image file's), which a 32 MB device feels.
	// Best effort: the loop driver falls back where the host filesystem
	// cannot do it. The device is bound to the locked file itself.
	dev, err := loop.AttachFile(img.f, loop.Options{Offset: info.PartStart, SizeLimit: info.PartSize, Autoclear: true, DirectIO: true})
	if err != nil {
		return nil, err
	}
	undo.Add("releasing "+dev.Path, func() error { return releaseLoop(dev) })
	if faults.Fail("attach-intruder") != nil {
		// Test builds only: attach the image a second time, as losetup
		// would, to exercise the check below.
		if x, err := loop.Attach(e.imagePath, loop.Options{Offset: info.PartStart, SizeLimit: info.PartSize}); err == nil {
			x.Close()
		}
	}
	// Something that does not take the image lock (losetup, an older
	// ovpkg) may have attached it meanwhile: two writers of one ext2
	// destroy it, so ours goes again.
	if ds, err := loop.LookupID(img.dev, img.ino); err != nil {
		return nil, err
	} else if others := otherDevices(ds, dev.Path); len(others) > 0 {
		return nil, fmt.Errorf("%w: %s was attached to %s as well while ovmount attached it; detached ours (%s), nothing was mounted", ErrImageInUse, e.image, attachedElsewhere(others), dev.Path)
	}

	if err := os.MkdirAll(e.mountPoint, 0o755); err != nil {
		return nil, fmt.Errorf("creating mount point: %w", err)
	}
	fstype := info.FSType
	if fstype == "" {
		fstype = "ext2"
	}
	// Record before mounting: if ovmount is killed once the card is
	// mounted, the next ovmount finds the card mounted as recorded and
	// finishes the job (or eject takes it down) instead of meeting a mount
	// it knows nothing about. Killed before the mount, the record names
	// nothing mounted and is dropped; the autoclear loop device goes with
	// this process's descriptor.
	rec := &Record{
		Config: e.cfgPath, Image: e.image, UUID: info.UUID, Loop: dev.Path,
		Offset: info.PartStart, SizeLimit: info.PartSize,
		CardMount: e.mountPoint, Root: e.root, Base: opt.Base, Dirs: dirs,
		MountedAt: time.Now().UTC(), PID: os.Getpid(),
		MountNS: ownMountNS(), ImageDev: img.dev, ImageIno: img.ino,
	}
	if err := writeRecord(e.runDir, rec); err != nil {
		return nil, err
	}
	undo.AddUnlessFailed("removing the mount record "+recordPath(e.runDir), func() error { return removeRecord(e.runDir) })
	err = mount.Mount(dev.Path, e.mountPoint, fstype, CardFlags, CardData)
	if errors.Is(err, unix.ENODEV) && fstype != "ext4" {
		// A kernel built with ext4 handling ext2 (CONFIG_EXT4_USE_FOR_EXT2
		// without a separate ext2) may not register "ext2" by that name.
		err = mount.Mount(dev.Path, e.mountPoint, "ext4", CardFlags, CardData)
	}
	if err != nil {
		return nil, err
	}
	undo.Add("unmounting the card from "+e.mountPoint, func() error {
		if err := faults.Fail("undo-card-unmount"); err != nil {
			return err
		}
		return mount.Unmount(e.mountPoint, 0)
	})
	// From here the card mount keeps the autoclear device bound.
	if err := dev.Close(); err != nil {
		return nil, err
	}
	faults.Crash("card-mounted")
	if err := faults.Fail("card-mounted"); err != nil {
		return nil, err
	}
	printf(opt, "%s attached to %s, mounted on %s\n", e.image, dev.Path, e.mountPoint)
	rec.CardTrust = gateCard(opt, e, rec, super)
	if err := stackOnCard(opt, e, rec, nil); err != nil {
		return nil, err
	}
	undo.Discard()
	rec.Warnings = warnings
	return rec, nil
}

// releaseLoop takes back an attach: through the handle Attach left open
// when the card was never mounted (LOOP_CLR_FD on our own descriptor);
// after the card mount (undone first) autoclear detaches it, which is
// confirmed, and Device.Detach (which clears the device only while it
// still backs our image) finishes a device that lingers.
func releaseLoop(dev *loop.Device) error {
	if dev.File != nil {
		if err := dev.Detach(); err != nil {
			return err
		}
		return loop.WaitDetached(dev, detachTimeout)
	}
	if err := loop.WaitDetached(dev, detachTimeout); err == nil {
		return nil
	}
	if err := dev.Detach(); err != nil && !errors.Is(err, unix.ENXIO) {
		return err
	}
	return loop.WaitDetached(dev, detachTimeout)
}

func otherDevices(ds []loop.Device, ours string) []loop.Device {
	var out []loop.Device
	for _, d := range ds {
		if d.Path != ours {
			out = append(out, d)
		}
	}
	return out
}

// undoJoin runs the undo list and joins its failures into err; when the
// undo failed the message says the record was kept.
func undoJoin(err error, l *undo.List) error { return undo.Join(err, l) }

// stackOnCard opens (or initialises) the layout on the mounted card,
// stacks the overlays of rec.Dirs except those already up, and writes the
// record. On failure nothing it mounted is left.
func stackOnCard(opt Options, e *env, rec *Record, already []overlay.Mount) error {
	l, err := card.Open(rec.CardMount)
	if errors.Is(err, card.ErrNotInitialized) {
		if l, err = card.Init(rec.CardMount, rec.Dirs); err == nil {
			printf(opt, "created the ovpkg layout (format %d) on the card\n", card.Format)
		}
	}
	if err != nil {
		return err
	}
	if opt.Prepare != nil {
		if err := opt.Prepare(l, rec); err != nil {
			return err
		}
	}
	ids, err := l.Layers()
	if err != nil {
		return err
	}
	top := ids[len(ids)-1]
	if err := l.EnsureDirs(top, rec.Dirs); err != nil {
		return err
	}
	specs, err := l.Specs(rec.Dirs)
	if err != nil {
		return err
	}
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	var all, todo []overlay.Mount
	for _, s := range specs {
		target := filepath.Join(rec.Root, s.Dir)
		m := overlay.Mount{Target: target, Lowers: append(append([]string{}, s.Lowers...), rec.BaseDir(s.Dir)), Upper: s.Upper, Work: s.Work, NoSuid: rec.NoSuid()}
		if a, ok := mountedAt(already, target); ok {
			// Keep what is mounted there (after an interrupted restack
			// its layers may differ from the stack's; txn recovery
			// restacks it).
			all = append(all, a)
			continue
		}
		all = append(all, m)
		// Never stack over a live ovpkg overlay: its lowerdir would
		// resolve to the overlay itself (e.g. after the top layer
		// changed). Other overlays (an OpenWrt overlay root, a test's
		// nested overlay) are legitimate lower directories.
		if cur := tab.Lookup(target); cur != nil && cur.FSType == overlay.FSType && cur.Source == overlay.Source {
			return fmt.Errorf("%s is already an ovpkg overlay (upper %s); run uovmount first", target, upperOf(cur))
		}
		todo = append(todo, m)
	}
	// Record first, then mount: if ovmount is killed part-way, the record
	// already names everything that may be mounted, so the next ovmount
	// completes the stack and eject can take it all down.
	rec.Layers, rec.TopLayer, rec.Tree, rec.Overlays = ids, top, l.Tree(top), all
	if err := writeRecord(e.runDir, rec); err != nil {
		return err
	}
	if err := overlay.Stack(todo, overlay.StackOptions{BeforeEach: beforeOverlay, Table: tab}); err != nil {
		return err
	}
	for _, m := range todo {
		printf(opt, "overlay on %s (upper %s)\n", m.Target, m.Upper)
	}
	rec.State = StateMounted
	return nil
}

// mountedAt returns the overlay of ms at target.
func mountedAt(ms []overlay.Mount, target string) (overlay.Mount, bool) {
	for _, m := range ms {
		if filepath.Clean(m.Target) == filepath.Clean(target) {
			return m, true
		}
	}
	return overlay.Mount{}, false
}

// restack mounts the overlays of a record whose card is still mounted
// (after uovmount, or when some overlays were unmounted by hand).
func restack(opt Options, e *env, rec *Record, tab mount.Table, up []overlay.Mount) (*Record, error) {
	dirs, err := OverlayDirs(e.dirsValue, e.root, e.mountPoint)
	if err != nil {
		return nil, err
	}
	if rec.State == StatePartial && !sameDirs(dirs, rec.Dirs) {
		return nil, fmt.Errorf("some of the recorded overlays are mounted and %s changed since; run uovmount first", config.KeyOverlayDirs)
	}
	rec.Dirs = dirs
	if opt.Trust && rec.NoSuid() {
		// The overlays are down: they come back with setuid.
		rec.CardTrust = &CardTrust{State: TrustApproved, Setuid: true}
		printf(opt, "card %s approved (--trust): setuid, setgid and file capabilities work on its overlays; a clean eject remembers it as this host's\n", rec.UUID)
	}
	// A command killed in the middle of a restack (txn) can leave some
	// directories on the new layers and others on the old: an ovpkg
	// overlay of this card whose upper is not the recorded one. It is
	// adopted as it is (the record then says what is really mounted), and
	// txn's recovery after ovmount restacks everything onto the card's
	// committed stack.
	for i, m := range rec.Overlays {
		if isOurOverlay(tab, m) {
			continue
		}
		live, ok := overlay.FromMount(tab.Lookup(m.Target))
		if !ok || !strings.HasPrefix(live.Upper, filepath.Clean(rec.CardMount)+"/") {
			continue
		}
		rec.Overlays[i] = live
		up = append(up, live)
		printf(opt, "%s: keeping the overlay an interrupted command left there (upper %s)\n", m.Target, live.Upper)
	}
	if err := stackOnCard(opt, e, rec, up); err != nil {
		return nil, err
	}
	printf(opt, "card %s already mounted on %s; overlays mounted again\n", rec.Image, rec.CardMount)
	return rec, nil
}

func sameDirs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fsck runs `e2fsck -p` on the card's partition inside the image file
// (e2fsck's IMAGE?offset=N syntax; nothing is attached yet) when the
// filesystem was not cleanly unmounted or has errors recorded. --force
// skips it (the kernel then mounts the filesystem as it is). Failure or a
// missing e2fsck refuses the mount with the exact repair command.
func fsck(opt Options, e *env, info *image.Info) error {
	target := info.FsckTarget()
	repair := fmt.Sprintf("e2fsck -f '%s'", target)
	if opt.Force {
		printf(opt, "warning: %s was not cleanly unmounted; mounting it unchecked because of --force (repair later with: %s)\n", e.image, repair)
		return nil
	}
	prog, err := findE2fsck()
	if err != nil {
		return fmt.Errorf("%w: %s was not cleanly unmounted (a pulled card?) and e2fsck is not installed to check it; repair it on a machine that has e2fsck with: %s (or mount it unchecked with --force)", ErrNeedsFsck, e.image, repair)
	}
	printf(opt, "%s was not cleanly unmounted; checking it with e2fsck -p '%s'\n", e.image, target)
	cmd := exec.Command(prog, "-p", target)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return fmt.Errorf("%w: running %s: %v; repair it with: %s", ErrNeedsFsck, prog, err, repair)
	}
	// 0: clean, 1: errors corrected, 2: corrected, reboot advised (not
	// for a card that is not the root filesystem).
	if code > 2 {
		msg := strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")
		if len(msg) > 300 {
			msg = msg[len(msg)-300:]
		}
		return fmt.Errorf("%w: e2fsck -p could not repair %s automatically (exit %d: %s); repair it with: %s", ErrNeedsFsck, e.image, code, msg, repair)
	}
	if code > 0 {
		printf(opt, "e2fsck repaired the card filesystem\n")
	}
	return nil
}

// findE2fsck looks e2fsck up in PATH (devices without e2fsprogs have
// none; the caller then refuses with the repair command).
func findE2fsck() (string, error) { return exec.LookPath("e2fsck") }

func upperOf(m *mount.Info) string {
	u, _ := mount.SuperOption(m, "upperdir")
	return u
}
