package mountset

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/trust"
)

// Defaults for config keys that are not set.
const (
	DefaultMountPoint = "/overlay"
	DefaultRunDir     = "/run/ovpkg"
	RecordName        = "mounts.json"
	LockName          = "lock"
)

// DefaultDirs are the root directories overlaid when OVERLAY_DIRS is not
// set: the first four always (when they exist), the others only where
// they are real directories rather than links into /usr (merged-/usr
// systems such as Debian 12 have /bin -> usr/bin).
var DefaultDirs = []string{"usr", "etc", "var", "opt", "bin", "sbin", "lib", "lib64"}

// Forbidden are top-level directories that are never overlaid: kernel
// and runtime filesystems, boot files, removable-media mount points.
var Forbidden = []string{"proc", "sys", "dev", "run", "tmp", "boot", "mnt", "media", "lost+found"}

// Errors callers test with errors.Is.
var (
	ErrNotMounted = errors.New("no card is mounted by ovpkg")
	ErrBusy       = errors.New("in use")
	ErrLocked     = errors.New("another ovpkg command is running")
	ErrUnknownImg = errors.New("image not made for this config")
	ErrNeedsFsck  = errors.New("card filesystem needs checking")
)

// Options are what every command passes.
type Options struct {
	ConfigPath string    // --config; "" = $OVPKG_CONFIG or /etc/ovpkg.conf
	Root       string    // --root; "" = "/"
	Force      bool      // --force: mount an unclean filesystem without e2fsck
	Trust      bool      // --trust: accept an image whose UUID the config does not know, and approve the card for setuid (trust package)
	Out        io.Writer // progress messages; nil = discard
	ProcDir    string    // where busy scans look; "" = /proc (tests)

	// Boot-time use by init-overlay, which stacks the card over a new
	// root before pivot_root; zero values keep the config's settings.
	Base       string // lowest layer of each overlay is Base/<dir>, not Root/<dir> (recorded)
	MountPoint string // mount the card here instead of MOUNTPOINT
	RunDir     string // keep the record and lock here instead of RUN_DIR
	ImageRoot  string // open SD_ROOTFS below this directory (the record keeps SD_ROOTFS)
	// Prepare runs on the card's layout after it is opened (or created)
	// and before the overlays are stacked from its stack file (rec says
	// what will be stacked where; its overlays are not mounted yet); an
	// error undoes everything.
	Prepare func(l *card.Layout, rec *Record) error
}

func (o Options) out() io.Writer {
	if o.Out == nil {
		return io.Discard
	}
	return o.Out
}

func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	return filepath.Clean(o.Root)
}

func (o Options) procDir() string {
	if o.ProcDir == "" {
		return "/proc"
	}
	return o.ProcDir
}

// Record is what ovmount did, kept as JSON in RUN_DIR so that uovmount and
// eject undo exactly that. It is replaced atomically.
type Record struct {
	Version   int    `json:"version"`
	Config    string `json:"config"`
	Image     string `json:"image"`
	UUID      string `json:"uuid"`
	Loop      string `json:"loop"`       // /dev/loopN
	Offset    int64  `json:"offset"`     // partition start in the image
	SizeLimit int64  `json:"sizelimit"`  // partition size
	CardMount string `json:"card_mount"` // MOUNTPOINT
	Root      string `json:"root"`
	// Base is where the overlays' lowest layers come from: Base/<dir>.
	// Empty means Root/<dir>, the directory under the overlay itself
	// (ovmount); init-overlay sets the original root, /overlay/robase.
	Base      string          `json:"base,omitempty"`
	Dirs      []string        `json:"dirs"`
	Layers    []string        `json:"layers"` // layer ids, bottom to top
	TopLayer  string          `json:"top_layer"`
	Tree      string          `json:"tree"` // the top layer's root-like tree (upperdirs live in it)
	Overlays  []overlay.Mount `json:"overlays"`
	MountedAt time.Time       `json:"mounted_at"`
	PID       int             `json:"pid"` // the ovmount that mounted it
	// MountNS is the mount namespace the card was mounted in (the inode
	// of /proc/PID/ns/mnt), ImageDev and ImageIno the image file's st_dev
	// and st_ino: another namespace that shares RUN_DIR sees the record,
	// not the mounts, and must leave both alone while the loop device
	// still backs the image.
	MountNS  uint64 `json:"mount_ns,omitempty"`
	ImageDev uint64 `json:"image_dev,omitempty"`
	ImageIno uint64 `json:"image_ino,omitempty"`

	// FlushFailed is set when flushing the card failed (eject's syncfs):
	// what was not written. It stays until a check of the card (e2fsck
	// by the next ovmount) shows it consistent; every eject repeats it.
	FlushFailed *FlushFailure `json:"flush_failed,omitempty"`

	// Detached are old overlays a restack detached (umount2 MNT_DETACH)
	// while processes held them; they keep the card busy until those
	// exit. Pruned whenever the record is read under the lock.
	Detached []DetachedOverlay `json:"detached,omitempty"`

	// CardTrust is what ovmount decided about setuid on the card (the
	// trust package's memory): not trusted means every overlay is nosuid.
	CardTrust *CardTrust `json:"card_trust,omitempty"`

	// State is computed from the live mount table when the record is
	// read, never stored: "mounted" (card and every overlay), "card-only"
	// (after uovmount), "partial" (some overlays missing), "gone".
	State string `json:"state,omitempty"`
	// AlreadyMounted is set by Up when it changed nothing.
	AlreadyMounted bool `json:"already_mounted,omitempty"`
	// Warnings are what Up warned about (the image's host filesystem
	// too small for what the card may still write); not stored.
	Warnings []string `json:"warnings,omitempty"`
}

const recordVersion = 1

// BaseDir is the base directory under the overlay of dir ("usr"): the
// lowest layer of its overlay.
func (r *Record) BaseDir(dir string) string {
	if r.Base != "" {
		return filepath.Join(r.Base, dir)
	}
	return filepath.Join(r.Root, dir)
}

// Record states.
const (
	StateMounted  = "mounted"
	StateCardOnly = "card-only"
	StatePartial  = "partial"
	StateGone     = "gone"
)

// env is what a command learns from the config and the options.
type env struct {
	cfgPath    string
	cfg        *config.File
	image      string // SD_ROOTFS as configured (and recorded)
	imagePath  string // where to open it (below Options.ImageRoot)
	uuid       string
	mountPoint string
	runDir     string
	dirsValue  string
	trustDir   string // TRUST_DIR: the host's memory of cards (trust package)
	root       string
	cfgErr     error // why the config could not be read (missing), nil when it was
}

// loadEnv reads the config through config.Load, which refuses a file (or
// a directory above it) that anyone but root could have changed: every
// command that reads the config, RUN_DIR or the mount record comes
// through here, so none can skip the check. A missing config leaves the
// defaults (cfgErr says why); Up refuses then.
func loadEnv(opt Options) (*env, error) {
	e := &env{cfgPath: config.Resolve(opt.ConfigPath), root: opt.root()}
	cfg, err := config.Load(e.cfgPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	e.cfgErr = err
	e.cfgPath = cfg.Path
	e.cfg = cfg
	get := func(k, def string) string {
		if v, ok := cfg.Get(k); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	e.image = get(config.KeyImage, "")
	e.uuid = get(config.KeyUUID, "")
	e.mountPoint = filepath.Clean(get(config.KeyMountPoint, DefaultMountPoint))
	e.runDir = filepath.Clean(get(config.KeyRunDir, DefaultRunDir))
	e.dirsValue = get(config.KeyOverlayDirs, "")
	e.trustDir = get(config.KeyTrustDir, trust.Default())
	if !filepath.IsAbs(e.mountPoint) {
		return nil, &config.Error{Path: e.cfgPath, Msg: fmt.Sprintf("%s=%s is not an absolute path", config.KeyMountPoint, e.mountPoint)}
	}
	if !filepath.IsAbs(e.runDir) {
		return nil, &config.Error{Path: e.cfgPath, Msg: fmt.Sprintf("%s=%s is not an absolute path", config.KeyRunDir, e.runDir)}
	}
	if e.image != "" && !filepath.IsAbs(e.image) {
		return nil, &config.Error{Path: e.cfgPath, Msg: fmt.Sprintf("%s=%s is not an absolute path", config.KeyImage, e.image)}
	}
	if opt.MountPoint != "" {
		e.mountPoint = filepath.Clean(opt.MountPoint)
	}
	if opt.RunDir != "" {
		e.runDir = filepath.Clean(opt.RunDir)
	}
	e.imagePath = e.image
	if opt.ImageRoot != "" && e.image != "" {
		e.imagePath = filepath.Join(opt.ImageRoot, e.image)
	}
	return e, nil
}

// RunDir returns the RUN_DIR the options' (trusted) config names
// (default /run/ovpkg), after making sure it is a directory only root can
// change (created root-owned 0700 when missing; refused otherwise, see
// checkRunDir). Whatever callers keep there (policy-rc.d logs, subhost
// state) is as safe as the mount record.
func RunDir(opt Options) (string, error) {
	e, err := loadEnv(opt)
	if err != nil {
		return "", err
	}
	if _, err := checkRunDir(e.runDir, true); err != nil {
		return "", err
	}
	return e.runDir, nil
}

// OverlayDirs decides which directories of root are overlaid. value is
// OVERLAY_DIRS (space- or comma-separated; "" = DefaultDirs). Explicitly
// named directories must exist as real directories and may not be
// forbidden, overlap each other, or contain the card's mount point;
// default ones that are missing or symbolic links are skipped.
func OverlayDirs(value, root, mountPoint string) ([]string, error) {
	explicit := strings.TrimSpace(value) != ""
	names := DefaultDirs
	if explicit {
		names = strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		d := strings.Trim(filepath.Clean("/"+n), "/")
		if d == "" || strings.Contains(n, "..") {
			return nil, fmt.Errorf("%s: %q is not a directory below the root", config.KeyOverlayDirs, n)
		}
		if seen[d] {
			continue
		}
		first, _, _ := strings.Cut(d, "/")
		for _, f := range Forbidden {
			if first == f {
				return nil, fmt.Errorf("%s: /%s is never overlaid (kernel, runtime, boot or removable-media directory)", config.KeyOverlayDirs, d)
			}
		}
		p := filepath.Join(root, d)
		if mountPoint == p || strings.HasPrefix(mountPoint+"/", p+"/") {
			if !explicit && mountPoint != p {
				return nil, fmt.Errorf("%s %s lies inside %s, which is overlaid by default; move the mount point or set %s", config.KeyMountPoint, mountPoint, p, config.KeyOverlayDirs)
			}
			if explicit {
				return nil, fmt.Errorf("%s: %s holds the card's mount point %s and cannot be overlaid", config.KeyOverlayDirs, p, mountPoint)
			}
			continue
		}
		st, err := os.Lstat(p)
		switch {
		case err != nil && !explicit:
			continue
		case err != nil:
			return nil, fmt.Errorf("%s: %s: %w", config.KeyOverlayDirs, p, err)
		case st.Mode()&os.ModeSymlink != 0 && !explicit:
			continue
		case st.Mode()&os.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			return nil, fmt.Errorf("%s: %s is a symbolic link to %s; overlay the directory it points to instead", config.KeyOverlayDirs, p, t)
		case !st.IsDir():
			if !explicit {
				continue
			}
			return nil, fmt.Errorf("%s: %s is not a directory", config.KeyOverlayDirs, p)
		}
		seen[d] = true
		out = append(out, d)
	}
	for _, a := range out {
		for _, b := range out {
			if a != b && strings.HasPrefix(b, a+"/") {
				return nil, fmt.Errorf("%s: %s and %s overlap; overlay only one of them", config.KeyOverlayDirs, a, b)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no directory of %s to overlay (set %s)", root, config.KeyOverlayDirs)
	}
	return out, nil
}

// state computes r.State from tab and returns the overlays of r that are
// mounted now.
func (r *Record) state(tab mount.Table) []overlay.Mount {
	card := tab.Lookup(r.CardMount)
	cardOK := card != nil && card.Source == r.Loop
	var up []overlay.Mount
	for _, m := range r.Overlays {
		if isOurOverlay(tab, m) {
			up = append(up, m)
		}
	}
	switch {
	case !cardOK && len(up) == 0:
		r.State = StateGone
	case cardOK && len(r.Overlays) > 0 && len(up) == len(r.Overlays):
		r.State = StateMounted
	case cardOK && len(up) == 0:
		r.State = StateCardOnly
	default:
		r.State = StatePartial
	}
	return up
}

// isOurOverlay says whether an overlay with m's upperdir is mounted at
// m.Target (anywhere in the stack of mounts there).
func isOurOverlay(tab mount.Table, m overlay.Mount) bool {
	o := tab.OverlayUsingUpper(m.Upper)
	return o != nil && o.Mountpoint == filepath.Clean(m.Target)
}

// Current returns the record of the card mounted now, with State filled
// in; ErrNotMounted when nothing is (a stale record is ignored), an
// ErrElsewhere error when the record's card is mounted in another mount
// namespace that shares RUN_DIR.
func Current(opt Options) (*Record, error) {
	e, err := loadEnv(opt)
	if err != nil {
		return nil, err
	}
	r, err := readRecord(e.runDir)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, ErrNotMounted
	}
	tab, err := mount.Self()
	if err != nil {
		return nil, err
	}
	r.state(tab)
	if r.State == StateGone {
		if err := r.elsewhere(e.runDir); err != nil {
			return nil, err
		}
		return nil, ErrNotMounted
	}
	return r, nil
}

// devices returns the st_dev numbers of r's live overlays and card mount.
func (r *Record) devices(tab mount.Table) []uint64 {
	devs := OverlayDevs(tab, r.Overlays)
	if c := tab.Lookup(r.CardMount); c != nil && c.Source == r.Loop {
		devs = append(devs, mount.Dev(c))
	}
	return devs
}

// OverlayDevs returns the device numbers (st_dev) of those of ms that are
// mounted at their target in tab: what busy.Scan and selfexec look for.
func OverlayDevs(tab mount.Table, ms []overlay.Mount) []uint64 {
	var devs []uint64
	for _, m := range ms {
		if o := tab.OverlayUsingUpper(m.Upper); o != nil && o.Mountpoint == filepath.Clean(m.Target) {
			devs = append(devs, mount.Dev(o))
		}
	}
	return devs
}

func printf(opt Options, format string, a ...any) { fmt.Fprintf(opt.out(), format, a...) }
