package initoverlay

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/kmod"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/txn"
)

// The seed's layout: a tmpfs on /overlay holding the original root
// (robase, read-only), the RAM upper (rwdata) and the new root
// (combined); the card, when it is the upper, is mounted beside them.
const (
	Staging     = "/overlay"
	Robase      = "/overlay/robase"
	Rwdata      = "/overlay/rwdata"
	Combined    = "/overlay/combined"
	CardMount   = "/overlay/card"
	DisableFile = "/overlay/disable"
	stageRun    = "/overlay/run" // the mount record while the new root is built
	configPath  = config.DefaultPath
)

// boot is one run of init-overlay as PID 1.
type boot struct {
	args   []string // the real init's arguments (the kernel's, after init=)
	env    []string // the environment the kernel gave
	con    io.Writer
	set    *Settings
	cfg    *config.File
	st     State
	undos  []undo
	mods   *kmod.Dir
	rec    *mountset.Record
	runDir string

	t0, last time.Duration
	phases   []string
	warnings []string
}

type undo struct {
	what string
	fn   func() error
}

// Main is init-overlay. As PID 1 it never returns: it ends by executing
// the real init (with an overlay or, where that cannot be built, without
// one) or, under the "stop" policy, by halting. Run as anything else it
// explains itself (--check shows the settings a boot would use).
func Main(args []string, stdout, stderr io.Writer) int {
	if os.Getpid() != 1 {
		return notPID1(args, stdout, stderr)
	}
	// Go exits on SIGTERM, SIGINT, SIGHUP and SIGQUIT by default: as PID 1
	// that would panic the kernel. Caught (not ignored: ignoring would be
	// inherited by the real init through exec) and dropped.
	signal.Notify(make(chan os.Signal, 1), unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
	b := &boot{args: args[1:], env: os.Environ(), con: stderr}
	b.t0 = bootClock()
	b.last = b.t0
	b.run()
	return 0 // not reached
}

func bootClock() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

// phase notes how long the step just finished took.
func (b *boot) phase(name string) {
	now := bootClock()
	b.phases = append(b.phases, name+"="+ms(now-b.last))
	b.last = now
}

func (b *boot) say(format string, a ...any) {
	fmt.Fprintf(b.con, "init-overlay: "+format+"\n", a...)
}

func (b *boot) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b.warnings = append(b.warnings, msg)
	b.say("warning: %s", msg)
}

func (b *boot) push(what string, fn func() error) { b.undos = append(b.undos, undo{what, fn}) }

// unwind undoes everything pushed, newest first; failures are said.
func (b *boot) unwind() {
	for i := len(b.undos) - 1; i >= 0; i-- {
		if err := b.undos[i].fn(); err != nil {
			b.warn("undoing %s: %v", b.undos[i].what, err)
		}
	}
	b.undos = nil
}

func (b *boot) run() {
	defer func() {
		if r := recover(); r != nil {
			b.say("internal error: %v", r)
			b.plain(StateFailed, fmt.Sprintf("internal error: %v", r))
		}
	}()
	b.early()
	b.settings()
	b.phase("setup")
	if _, err := os.Lstat(DisableFile); err == nil {
		b.plain(StateDisabled, DisableFile+" exists on the root")
	}
	if b.set.Upper == UpperOff {
		b.plain(StateOff, b.set.From["BOOT_UPPER"]+" says off")
	}
	b.st.Set("REQUESTED", b.set.Upper)
	b.st.Set("FALLBACK", b.set.Fallback)
	if err := b.loadModules(); err != nil {
		b.plain(StateFailed, err.Error())
	}
	b.phase("modules")
	if err := b.buildRoot(); err != nil {
		b.unwind()
		b.plain(StateFailed, err.Error())
	}
	b.phase("tmpfs-root")
	upper := UpperTmpfs
	if b.set.Upper == UpperCard {
		if err := b.stackCard(); err != nil {
			b.cardFailed(err) // returns only for the tmpfs policy
		} else {
			upper = UpperCard
		}
	}
	if err := b.pivot(upper); err != nil {
		if b.undos != nil { // failed before anything moved
			b.unwind()
			b.plain(StateFailed, "switching to the new root: "+err.Error())
		}
		// Part of the switch happened: nothing can be undone reliably
		// any more, so start the real init where we are.
		b.st.Set("STATE", StateFailed)
		b.st.Set("REASON", "switching to the new root: "+err.Error())
		b.say("switching to the new root failed: %v; starting the real init in the current root", err)
		b.finish(upper)
	}
	b.phase("pivot")
	if b.st.Get("STATE") == "" {
		b.st.Set("STATE", StateOK)
	}
	b.finish(upper)
}

// early mounts what PID 1 needs: /proc, /sys, /dev (an initramfs may have
// moved them over already), and makes sure the console is stdin/out/err.
func (b *boot) early() {
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		if err := mount.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			b.warn("%v", err)
		}
	}
	tab, _ := mount.Self()
	if tab.Lookup("/sys") == nil {
		if err := mount.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			b.warn("%v", err)
		}
	}
	if tab.Lookup("/dev") == nil {
		if err := mount.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
			b.warn("%v", err)
		}
	}
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err != nil {
		// The kernel found no /dev/console on the root to give us.
		if fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0); err == nil {
			for i := 0; i < 3; i++ {
				unix.Dup2(fd, i)
			}
			if fd > 2 {
				unix.Close(fd)
			}
		}
	}
	// Private propagation: mounts can be moved, and nothing we do leaks.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		b.warn("making / private: %v", err)
	}
	if os.Getenv("PATH") == "" {
		os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") // for e2fsck; the real init gets the kernel's env
	}
}

// settings reads /proc/cmdline and the root's /etc/ovpkg.conf.
func (b *boot) settings() {
	cmd, _ := os.ReadFile("/proc/cmdline")
	if err := config.CheckTrusted(configPath); err == nil {
		cfg, err := config.Load(configPath)
		if err != nil {
			b.warn("ignoring %s: %v", configPath, err)
		} else {
			b.cfg = cfg
		}
	} else if _, serr := os.Lstat(configPath); serr == nil {
		b.warn("ignoring %s: %v", configPath, err)
	}
	b.set = Resolve(b.cfg, ParseCmdline(string(cmd)))
	for _, w := range b.set.Warnings {
		b.warn("%s", w)
	}
	b.runDir = mountset.DefaultRunDir
	if b.cfg != nil {
		if v, ok := b.cfg.Get(config.KeyRunDir); ok && filepath.IsAbs(strings.TrimSpace(v)) {
			b.runDir = filepath.Clean(strings.TrimSpace(v))
		}
	}
}

// haveFS reports whether the kernel has filesystem type fs now.
func haveFS(fs string) bool {
	b, _ := os.ReadFile("/proc/filesystems")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == fs {
			return true
		}
	}
	return false
}

// need loads a module unless the kernel has the filesystem (fs) or the
// module already.
func (b *boot) need(module, fs string) error {
	if fs != "" && haveFS(fs) {
		return nil
	}
	if b.mods == nil {
		rel, err := kmod.Release()
		if err != nil {
			return err
		}
		b.mods = kmod.Open("/", rel)
	}
	err := b.mods.Load(module)
	if err != nil && fs != "" && haveFS(fs) {
		return nil
	}
	return err
}

// loadModules loads overlay (and, for the card, loop and ext2/ext4 and
// the extra modules) from the root's /lib/modules/$(uname -r).
func (b *boot) loadModules() error {
	for _, m := range b.set.Modules {
		if err := b.need(m, ""); err != nil {
			b.warn("loading %s: %v", m, err)
		}
	}
	if err := b.need("overlay", "overlay"); err != nil {
		return fmt.Errorf("the kernel has no overlay filesystem and the module could not be loaded: %w", err)
	}
	if b.set.Upper == UpperCard {
		if _, err := os.Stat("/dev/loop-control"); err != nil {
			if err := b.need("loop", ""); err != nil {
				b.warn("loading loop: %v", err)
			}
		}
		if err := b.need("fs-ext2", "ext2"); err != nil {
			b.warn("loading ext2 support: %v", err)
		}
	}
	if b.mods != nil && len(b.mods.Loaded) > 0 {
		b.st.Set("MODULES", strings.Join(b.mods.Loaded, " "))
	}
	return nil
}

// buildRoot makes the tmpfs on /overlay, the read-only bind of the root on
// /overlay/robase, the RAM upper on /overlay/rwdata and the overlay on
// /overlay/combined.
func (b *boot) buildRoot() error {
	if st, err := os.Stat(Staging); err != nil || !st.IsDir() {
		if err := os.Mkdir(Staging, 0o755); err != nil {
			return fmt.Errorf("the root has no %s directory to build the overlay in and it cannot be made (%v): create it on the root (mkdir %s)", Staging, err, Staging)
		}
	}
	if err := mount.Mount("ovpkg-boot", Staging, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return err
	}
	b.push("the tmpfs on "+Staging, func() error { return mount.Unmount(Staging, unix.MNT_DETACH) })
	for _, d := range []string{Robase, Rwdata, Combined, CardMount, stageRun} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	// The base: the root filesystem itself, read-only (also its
	// superblock, so nothing writes to it behind the overlay).
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		b.warn("the root filesystem stays writable underneath (remount read-only: %v)", err)
	}
	if err := mount.Mount("/", Robase, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	b.push(Robase, func() error { return mount.Unmount(Robase, unix.MNT_DETACH) })
	if err := mount.Mount("", Robase, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return err
	}
	if err := mount.Mount("ovpkg-rwdata", Rwdata, "tmpfs", 0, "mode=0755,size="+b.set.Size); err != nil {
		return err
	}
	b.push(Rwdata, func() error { return mount.Unmount(Rwdata, unix.MNT_DETACH) })
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(Rwdata, d), 0o755); err != nil {
			return err
		}
	}
	data, err := overlay.Data(overlay.Mount{Target: Combined, Lowers: []string{Robase}, Upper: Rwdata + "/upper", Work: Rwdata + "/work"})
	if err != nil {
		return err
	}
	if err := mount.Mount("ovpkg-root", Combined, overlay.FSType, 0, data); err != nil {
		return err
	}
	b.push(Combined, func() error { return mount.Unmount(Combined, unix.MNT_DETACH) })
	b.st.Set("BASE", Robase)
	b.st.Set("RWDATA", Rwdata)
	return nil
}

// stackCard mounts the filesystem holding the card image inside the new
// root and stacks the card over it as ovmount would, with the read-only
// base as the overlays' lowest layer.
func (b *boot) stackCard() error {
	if b.cfg == nil {
		return fmt.Errorf("no trusted %s names a card image (SD_ROOTFS)", configPath)
	}
	img, _ := b.cfg.Get(config.KeyImage)
	img = strings.TrimSpace(img)
	if img == "" || !filepath.IsAbs(img) {
		return fmt.Errorf("%s: %s is not set to an absolute path (run mkoverlay)", configPath, config.KeyImage)
	}
	b.st.Set("CARD_IMAGE", img)
	fstab, _ := os.ReadFile("/etc/fstab")
	src, err := FindCardSource(filepath.Clean(img), ParseFstab(string(fstab)), b.set.CardDev)
	if err != nil {
		return err
	}
	dev, info, err := findDevice(src.Spec, b.set.CardWait)
	if err != nil {
		return err
	}
	b.st.Set("CARD_DEVICE", dev)
	b.phase("card-device")
	fstype := src.Type
	if fstype == "auto" || fstype == "" {
		if info == nil {
			return fmt.Errorf("%s (holding %s): no filesystem found on it", dev, img)
		}
		fstype = info.Type
	}
	if err := b.need("fs-"+fstype, fstype); err != nil {
		b.warn("loading %s support: %v", fstype, err)
	}
	mp := filepath.Join(Combined, src.Dir)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return err
	}
	flags, data := mountOptions(src.Options)
	if err := mount.Mount(dev, mp, fstype, flags, data); err != nil {
		return fmt.Errorf("mounting the filesystem holding the card (%s from %s): %w", src.Spec, src.From, err)
	}
	b.push(mp, func() error { return mount.Unmount(mp, 0) })
	if _, err := os.Stat(filepath.Join(Combined, img)); err != nil {
		return fmt.Errorf("card image %s: %w (on %s)", img, err, dev)
	}
	b.phase("card-fs")
	var out bytes.Buffer
	opt := mountset.Options{ConfigPath: configPath, Root: Combined, Base: Robase, MountPoint: CardMount,
		RunDir: stageRun, ImageRoot: Combined, Prepare: b.prepareCard, Out: &out, Force: b.set.Unclean == UncleanMount}
	rec, err := mountset.Up(opt)
	if err != nil {
		if s := strings.TrimSpace(out.String()); s != "" {
			b.say("%s", strings.ReplaceAll(s, "\n", "\ninit-overlay: "))
		}
		return err
	}
	b.rec = rec
	b.phase("card-stack")
	if l, err := card.Open(CardMount); err == nil {
		if err := MarkReady(l, time.Now()); err != nil {
			b.warn("marking the card ready: %v", err)
		}
	}
	b.phase("card-ready")
	b.st.Set("CARD_MOUNT", CardMount)
	b.st.Set("CARD_LAYERS", strings.Join(rec.Layers, " "))
	return nil
}

// prepareCard runs on the opened card before its overlays are stacked:
// the PENDING mark, recovery of an interrupted command, try-boot.
func (b *boot) prepareCard(l *card.Layout, rec *mountset.Record) error {
	b.phase("card-attach") // inspect, fsck, loop, mount, layout
	defer b.phase("card-prepare")
	n, err := MarkPending(l, time.Now())
	if err != nil {
		return err
	}
	if n > 0 {
		b.warn("the card's setup did not finish at the previous boot; it is recovered before use")
		b.st.Set("CARD_SETUP", fmt.Sprintf("recovered after %d unfinished boot(s)", n))
	}
	c := txn.OfflineCard(l, rec, writerFunc(func(s string) { b.say("%s", s) }))
	if err := c.Recover(); err != nil {
		return err
	}
	out, err := c.BootTrial()
	if err != nil {
		return err
	}
	b.st.Set("TRIAL", out.State)
	if out.Trial != nil {
		b.st.Set("TRIAL_LAYERS", strings.Join(out.Trial.Layers, " "))
	}
	switch out.State {
	case txn.TrialOn:
		b.st.Set("TRIAL_BOOT", fmt.Sprintf("%d/%d", out.Trial.Boots, out.Trial.MaxBoots))
		b.say("layers %s are on trial: boot %d of %d; confirm with `ovpkg boot ok` or they are rolled back", strings.Join(out.Trial.Layers, " "), out.Trial.Boots, out.Trial.MaxBoots)
	case txn.TrialDropped:
		b.st.Set("TRIAL_DROPPED", strings.Join(out.Dropped, " "))
		b.say("layers %s were not confirmed within %d boot(s): rolled back", strings.Join(out.Dropped, " "), out.Trial.MaxBoots)
	case txn.TrialStale:
		b.say("the trial of layers %s ended: they are no longer on the card", strings.Join(out.Trial.Layers, " "))
	}
	return nil
}

type writerFunc func(string)

func (w writerFunc) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w(l)
	}
	return len(p), nil
}

// cardFailed applies the fallback policy to a card that cannot be used.
// It returns only for the tmpfs policy, with the tmpfs root kept.
func (b *boot) cardFailed(err error) {
	reason := "card: " + err.Error()
	b.st.Set("REASON", reason)
	// Undo the card's part only: the tmpfs root stays for FallbackTmpfs.
	for len(b.undos) > 0 && b.undos[len(b.undos)-1].what != Combined {
		u := b.undos[len(b.undos)-1]
		b.undos = b.undos[:len(b.undos)-1]
		if uerr := u.fn(); uerr != nil {
			b.warn("undoing %s: %v", u.what, uerr)
		}
	}
	switch b.set.Fallback {
	case FallbackTmpfs:
		b.st.Set("STATE", StateFallback)
		b.say("THE CARD IS NOT USED: %v", err)
		b.say("booting with a RAM overlay instead (BOOT_FALLBACK=tmpfs): changes are lost at the next boot")
	case FallbackRO:
		b.unwind()
		b.say("THE CARD IS NOT USED: %v", err)
		b.plain(StateFallback, reason+"; booting the plain root read-only (BOOT_FALLBACK=ro)")
	default:
		b.unwind()
		b.say("THE CARD IS NOT USED: %v", err)
		b.stop(reason)
	}
}

// stop halts the machine with the reason on the console (BOOT_FALLBACK=stop).
func (b *boot) stop(reason string) {
	b.st.Set("STATE", "stopped")
	b.ensureRun("/run")
	b.writeStateTo(b.runDir)
	b.say("stopping (BOOT_FALLBACK=stop): %s", reason)
	b.say("to boot anyway, add ovpkg.fallback=tmpfs or ovpkg.upper=off to the kernel command line")
	unix.Sync()
	halt := uint32(unix.LINUX_REBOOT_CMD_HALT)
	unix.Reboot(int(int32(halt))) // the constant overflows int on 32-bit targets
	for {
		unix.Pause()
	}
}

// ensureRun makes sure dir (the new root's /run) is a tmpfs.
func (b *boot) ensureRun(dir string) {
	tab, _ := mount.Self()
	if tab.Lookup(dir) != nil {
		return
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.warn("no %s for the boot state: %v", dir, err)
			return
		}
	}
	if err := mount.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=10%"); err != nil {
		b.warn("%v", err)
	}
}

// plain starts the real init on the root as it is, without an overlay.
func (b *boot) plain(state, reason string) {
	b.unwind()
	b.st.Set("STATE", state)
	b.st.Set("UPPER", "none")
	b.st.Set("REASON", reason)
	switch state {
	case StateDisabled, StateOff:
		b.say("overlay off (%s): starting the plain root", reason)
	default:
		b.say("NO OVERLAY: %s; starting the plain root", reason)
	}
	b.ensureRun("/run")
	b.execInit()
}

// pivot makes /overlay/combined the root: the staging tmpfs (with robase,
// rwdata and the card) shows at /overlay in it, /proc /sys /dev /run move
// along, and the old root is let go.
func (b *boot) pivot(upper string) error {
	in := func(p string) string { return filepath.Join(Combined, p) }
	if err := mount.Mount(Staging, in(Staging), "", unix.MS_BIND, ""); err != nil {
		return err
	}
	b.push(in(Staging), func() error { return mount.Unmount(in(Staging), unix.MNT_DETACH) })
	moves := []string{Robase, Rwdata}
	if upper == UpperCard {
		moves = append(moves, CardMount)
	}
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run"} {
		if tab.Lookup(d) != nil {
			moves = append(moves, d)
		}
	}
	for _, d := range moves {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return err
		}
	}
	b.undos = nil // from here on nothing is undone
	for _, d := range moves {
		if err := unix.Mount(d, in(d), "", unix.MS_MOVE, ""); err != nil {
			return &mount.Error{Op: "move", Source: d, Target: in(d), Err: err}
		}
	}
	if err := os.Chdir(Combined); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", strings.TrimPrefix(Combined, "/")); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount(Combined, unix.MNT_DETACH); err != nil {
		b.warn("letting go of the old root: %v", err)
	}
	b.ensureRun("/run")
	return nil
}

// finish writes the mount record (card) and the boot state into the new
// root's RUN_DIR and executes the real init.
func (b *boot) finish(upper string) {
	b.st.Set("UPPER", upper)
	if b.rec != nil && upper == UpperCard {
		rec := *b.rec
		rec.Root = "/"
		rec.Overlays = append([]overlay.Mount(nil), b.rec.Overlays...)
		for i := range rec.Overlays {
			rec.Overlays[i].Target = "/" + strings.TrimLeft(strings.TrimPrefix(rec.Overlays[i].Target, Combined), "/")
		}
		if err := mountset.WriteRecord(b.runDir, &rec); err != nil {
			b.warn("writing the mount record: %v (ovpkg will not see the card as mounted)", err)
		}
		os.RemoveAll(stageRun) // a directory on the staging tmpfs
	}
	switch upper {
	case UpperCard:
		b.say("root overlay: card %s (layers %s) over the read-only base %s", b.st.Get("CARD_IMAGE"), b.st.Get("CARD_LAYERS"), Robase)
	default:
		b.say("root overlay: RAM (tmpfs, size %s) over the read-only base %s; changes are lost at the next boot", b.set.Size, Robase)
	}
	b.execInit()
}

// execInit executes the real init as PID 1 with the kernel's arguments
// and environment. It tries the named init, then the kernel's list, and
// never returns: with nothing to execute it says so and waits.
func (b *boot) execInit() {
	var cands []string
	if b.set != nil && b.set.Init != "" {
		cands = append(cands, b.set.Init)
	}
	for _, c := range DefaultInits {
		if len(cands) == 0 || c != cands[0] {
			cands = append(cands, c)
		}
	}
	runDir := b.runDir
	if runDir == "" {
		runDir = mountset.DefaultRunDir
	}
	for i, c := range cands {
		if i > 0 {
			b.warn("starting %s instead", c)
		}
		b.st.Set("INIT", c)
		b.writeStateTo(runDir)
		b.say("starting %s (init-overlay took %s ms)", c, ms(bootClock()-b.t0))
		err := unix.Exec(c, append([]string{c}, b.args...), b.env)
		b.warn("cannot execute %s: %v", c, err)
	}
	b.say("no init could be executed (tried %s); the system cannot start", strings.Join(cands, ", "))
	for {
		unix.Pause()
	}
}

func (b *boot) writeStateTo(runDir string) {
	b.st.Set("T_START_MS", ms(b.t0))
	b.st.Set("T_EXEC_MS", ms(bootClock()))
	b.st.Set("PHASES_MS", strings.Join(b.phases, " "))
	b.st.Set("WARNINGS", strings.Join(b.warnings, "; "))
	if err := b.st.Write(runDir); err != nil {
		b.say("writing the boot state to %s: %v", runDir, err)
	}
}

// notPID1 is init-overlay started from a shell.
func notPID1(args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "--check" {
		cmd, _ := os.ReadFile("/proc/cmdline")
		var cfg *config.File
		if err := config.CheckTrusted(configPath); err == nil {
			cfg, _ = config.Load(configPath)
		} else if _, serr := os.Lstat(configPath); serr == nil {
			fmt.Fprintf(stdout, "warning: %s would be ignored: %v\n", configPath, err)
		}
		s := Resolve(cfg, ParseCmdline(string(cmd)))
		fmt.Fprintf(stdout, "upper:    %s (%s)\nfallback: %s (%s)\ninit:     %s (%s)\nsize:     %s (%s)\n",
			s.Upper, s.From["BOOT_UPPER"], s.Fallback, s.From["BOOT_FALLBACK"], orDefault(s.Init), s.From["BOOT_INIT"], s.Size, s.From["BOOT_SIZE"])
		if s.Upper == UpperCard && cfg != nil {
			img, _ := cfg.Get(config.KeyImage)
			fstab, _ := os.ReadFile("/etc/fstab")
			if src, err := FindCardSource(filepath.Clean(strings.TrimSpace(img)), ParseFstab(string(fstab)), s.CardDev); err != nil {
				fmt.Fprintf(stdout, "card:     %v\n", err)
			} else {
				fmt.Fprintf(stdout, "card:     %s on %s (%s, from %s), wait %v\n", img, src.Spec, src.Type, src.From, s.CardWait)
			}
		}
		if _, err := os.Lstat(DisableFile); err == nil {
			fmt.Fprintf(stdout, "disabled: %s exists\n", DisableFile)
		}
		for _, w := range s.Warnings {
			fmt.Fprintf(stdout, "warning:  %s\n", w)
		}
		return 0
	}
	help := `Usage: init-overlay (as PID 1: init=/sbin/init-overlay on the kernel command line)
       init-overlay --check   (show the settings the next boot would use)

Builds a writable root over the read-only one before the real init starts: a tmpfs on
/overlay, the root bound read-only on /overlay/robase, the upper on /overlay/rwdata (RAM)
or the ovpkg card (mounted on /overlay/card, its layers stacked over each overlaid
directory), the new root /overlay/combined; then pivot_root and the real init as PID 1.
Settings: BOOT_UPPER, BOOT_FALLBACK, BOOT_INIT, BOOT_SIZE, BOOT_CARD_DEV, BOOT_CARD_WAIT,
BOOT_MODULES, BOOT_UNCLEAN in /etc/ovpkg.conf, or ovpkg.upper= ovpkg.fallback= ovpkg.init=
ovpkg.size= ovpkg.carddev= ovpkg.cardwait= ovpkg.modules= ovpkg.unclean= on the kernel command line. A file
/overlay/disable on the root turns it off. What a boot did: ovpkg boot status.
`
	if len(args) > 1 && (args[1] == "--help" || args[1] == "-h") {
		fmt.Fprint(stdout, help)
		return 0
	}
	fmt.Fprint(stderr, "init-overlay: runs only as PID 1 (init=/sbin/init-overlay); --check shows the settings\n")
	return 2
}

func orDefault(s string) string {
	if s == "" {
		return strings.Join(DefaultInits, ", then ")
	}
	return s
}
