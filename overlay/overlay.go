package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/mount"
)

// Source is the source name every ovpkg overlay carries in mountinfo.
const Source = "ovpkg"

// FSType is overlayfs's filesystem type name.
const FSType = "overlay"

// Option is one key=value overlay mount option.
type Option struct{ Key, Value string }

// Pinned are the feature options set on every overlay (see the package
// documentation for why each has the value it has).
var Pinned = []Option{
	{"index", "off"},
	{"metacopy", "off"},
	{"redirect_dir", "nofollow"},
	{"xino", "auto"},
	{"nfs_export", "off"},
}

// MountFlags are the mount(2) flags of every overlay; MountAttrs the same
// for fsmount(2).
const (
	MountFlags = unix.MS_NODEV
	MountAttrs = unix.MOUNT_ATTR_NODEV
)

// Mount describes one overlay.
type Mount struct {
	Target string   `json:"target"`
	Lowers []string `json:"lowers"` // topmost first; the last is normally the base directory itself
	Upper  string   `json:"upper"`
	Work   string   `json:"work"`
	// NoSuid mounts it nosuid as well: setuid and setgid bits and file
	// capabilities are ignored on exec (a card the host does not trust,
	// see the trust package; it applies to the base's files too).
	NoSuid bool `json:"nosuid,omitempty"`
}

// flags are m's mount(2) flags, attrs its fsmount(2) attributes.
func (m Mount) flags() (uintptr, int) {
	if m.NoSuid {
		return MountFlags | unix.MS_NOSUID, MountAttrs | unix.MOUNT_ATTR_NOSUID
	}
	return MountFlags, MountAttrs
}

// FromMount reads back the layers of a live ovpkg overlay from its
// mountinfo entry: the "lowerdir+" entries (new mount API) or a legacy
// colon-separated "lowerdir", "upperdir" and "workdir". ok is false for
// anything that is not an ovpkg overlay with an upper.
func FromMount(info *mount.Info) (m Mount, ok bool) {
	if info == nil || info.FSType != FSType || info.Source != Source {
		return Mount{}, false
	}
	m.Target = info.Mountpoint
	for _, o := range strings.Split(info.Options, ",") {
		m.NoSuid = m.NoSuid || o == "nosuid"
	}
	for _, o := range mount.SuperOptions(info) {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir+":
			m.Lowers = append(m.Lowers, v)
		case "lowerdir":
			m.Lowers = append(m.Lowers, splitLegacyLowers(v)...)
		case "upperdir":
			m.Upper = v
		case "workdir":
			m.Work = v
		}
	}
	return m, m.Upper != "" && m.Work != "" && len(m.Lowers) > 0
}

// splitLegacyLowers splits mount(2)'s "a:b:c" lowerdir, where a colon
// inside a path is written "\:".
func splitLegacyLowers(v string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v):
			cur.WriteByte(v[i+1])
			i++
		case v[i] == ':':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(v[i])
		}
	}
	return append(out, cur.String())
}

// Validate checks that m names absolute paths and at least one lower.
func (m Mount) Validate() error {
	if len(m.Lowers) == 0 {
		return fmt.Errorf("overlay on %s: no lower directory", m.Target)
	}
	for _, p := range append([]string{m.Target, m.Upper, m.Work}, m.Lowers...) {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("overlay on %s: path %q is not absolute", m.Target, p)
		}
	}
	return nil
}

// Options returns every option of m in the order they are given to the
// kernel: lowers (topmost first), upperdir, workdir, then Pinned.
func Options(m Mount) []Option {
	var out []Option
	for _, l := range m.Lowers {
		out = append(out, Option{"lowerdir+", l})
	}
	out = append(out, Option{"upperdir", m.Upper}, Option{"workdir", m.Work})
	return append(out, Pinned...)
}

// ErrOptionsTooLong is returned when mount(2)'s option string would not fit
// in one page (only on kernels without the new mount API).
var ErrOptionsTooLong = errors.New("overlay options longer than one page")

// Data renders m as a mount(2) option string: lowerdir=a:b (':' , ',' and
// '\' in paths escaped with '\'), upperdir, workdir, then Pinned.
func Data(m Mount) (string, error) {
	esc := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	var lows []string
	for _, l := range m.Lowers {
		lows = append(lows, esc.Replace(l))
	}
	parts := []string{"lowerdir=" + strings.Join(lows, ":"), "upperdir=" + esc.Replace(m.Upper), "workdir=" + esc.Replace(m.Work)}
	for _, o := range Pinned {
		parts = append(parts, o.Key+"="+o.Value)
	}
	d := strings.Join(parts, ",")
	if len(d) >= os.Getpagesize() {
		return d, fmt.Errorf("overlay on %s: %d bytes of options: %w", m.Target, len(d), ErrOptionsTooLong)
	}
	return d, nil
}

// Error is a failed overlay mount: the step that failed, the kernel's own
// message when it gave one, and the errno (Unwrap).
type Error struct {
	Target string
	Step   string // "fsopen", "fsconfig upperdir", "fsconfig create", "fsmount", "move_mount", "mount"
	Kernel string // the kernel's message from the fs context log, if any
	Err    error
}

func (e *Error) Error() string {
	s := "overlay on " + e.Target + ": " + e.Step + ": " + e.Err.Error()
	if e.Kernel != "" {
		s += " (kernel: " + e.Kernel + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// errNoNewAPI says the kernel lacks fsopen or overlay's "lowerdir+".
var errNoNewAPI = errors.New("new mount API not available")

// forceLegacy makes MountOne use mount(2) (tests of the fallback path).
var forceLegacy = false

// MountOne mounts the overlay m at m.Target: with the new mount API where
// the kernel has it, else with mount(2).
func MountOne(m Mount) error { return MountAs(m, Source) }

// MountAs is MountOne with another source name in mountinfo (a subhost's
// root overlay carries the subhost's name, as overlay-boot's does).
func MountAs(m Mount, source string) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if !forceLegacy {
		err := mountNew(m, source)
		if !errors.Is(err, errNoNewAPI) {
			return err
		}
	}
	data, err := Data(m)
	if err != nil {
		return err
	}
	flags, _ := m.flags()
	if err := mount.Mount(source, m.Target, FSType, flags, data); err != nil {
		var me *mount.Error
		if errors.As(err, &me) {
			return &Error{Target: m.Target, Step: "mount", Err: me.Err}
		}
		return err
	}
	return nil
}

func mountNew(m Mount, source string) error {
	fd, err := unix.Fsopen(FSType, unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return errNoNewAPI
		}
		return &Error{Target: m.Target, Step: "fsopen", Err: err}
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetString(fd, "source", source); err != nil {
		return &Error{Target: m.Target, Step: "fsconfig source", Kernel: fsLog(fd), Err: err}
	}
	for i, o := range Options(m) {
		if err := unix.FsconfigSetString(fd, o.Key, o.Value); err != nil {
			msg := fsLog(fd)
			if i == 0 && o.Key == "lowerdir+" && errors.Is(err, unix.EINVAL) && strings.Contains(msg, "nknown parameter") {
				return errNoNewAPI // kernel before 6.8
			}
			return &Error{Target: m.Target, Step: "fsconfig " + o.Key + "=" + o.Value, Kernel: msg, Err: err}
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		msg := fsLog(fd)
		if errors.Is(err, unix.EINVAL) && msg == "" {
			// Before Linux 6.5 overlayfs took its options through the
			// legacy fs_context: fsconfig accepts any key and the whole
			// string is parsed at create, where "lowerdir+" (6.8) is
			// unknown (the complaint goes to the kernel log, not here).
			// Found booting Debian 12's 6.1 kernel.
			return errNoNewAPI
		}
		return &Error{Target: m.Target, Step: "fsconfig create", Kernel: msg, Err: err}
	}
	_, attrs := m.flags()
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return &Error{Target: m.Target, Step: "fsmount", Kernel: fsLog(fd), Err: err}
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, m.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &Error{Target: m.Target, Step: "move_mount", Err: err}
	}
	return nil
}

// fsLog drains the fs context's message log ("e overlay: ..." lines).
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for i := 0; i < 16; i++ {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		s := strings.TrimSpace(string(buf[:n]))
		if len(s) > 2 && s[1] == ' ' {
			s = s[2:]
		}
		msgs = append(msgs, s)
	}
	return strings.Join(msgs, "; ")
}

// Unmount unmounts the overlay at target (never lazily).
func Unmount(target string) error { return mount.Unmount(target, 0) }

// CheckFree refuses to stack ms when one of their upperdirs is already the
// upperdir of a mounted overlay in tab, or when two of them share an
// upperdir or a workdir. (overlayfs with index=off only warns.)
func CheckFree(tab mount.Table, ms []Mount) error {
	seen := map[string]string{}
	for _, m := range ms {
		for _, p := range []string{m.Upper, m.Work} {
			p = filepath.Clean(p)
			if t, ok := seen[p]; ok {
				return fmt.Errorf("overlays on %s and %s would share %s", t, m.Target, p)
			}
			seen[p] = m.Target
		}
		if in := tab.OverlayUsingUpper(m.Upper); in != nil {
			return fmt.Errorf("upper directory %s is already in use by the overlay on %s (unmount that first: uovmount, or umount %s): %w",
				m.Upper, in.Mountpoint, in.Mountpoint, unix.EBUSY)
		}
	}
	return nil
}

// StackOptions tune Stack.
type StackOptions struct {
	// Table is the mount table to check upperdirs against; nil reads
	// /proc/self/mountinfo.
	Table mount.Table
	// BeforeEach, if set, runs before the i-th mount (0-based); an error
	// from it counts as that mount failing. For tests.
	BeforeEach func(i int, m Mount) error
}

// StackError is a Stack that failed part-way: which overlay failed, and
// whether undoing the ones already mounted worked.
type StackError struct {
	Index   int // 0-based index of the overlay that failed
	Total   int
	Target  string
	Err     error
	UndoErr error // nil when every earlier overlay was unmounted again
}

func (e *StackError) Error() string {
	s := fmt.Sprintf("overlay %d of %d (%s) failed: %v", e.Index+1, e.Total, e.Target, e.Err)
	if e.Index > 0 {
		if e.UndoErr == nil {
			s += fmt.Sprintf("; the %d overlay(s) already mounted were unmounted again", e.Index)
		} else {
			s += "; undoing the earlier overlays also failed: " + e.UndoErr.Error()
		}
	}
	return s
}

func (e *StackError) Unwrap() error { return e.Err }

// Stack mounts ms in order, all or nothing: when one fails, those already
// mounted are unmounted again, newest first, and a *StackError says what
// happened. Upperdirs in use by another overlay are refused before
// anything is mounted.
func Stack(ms []Mount, opt StackOptions) error {
	tab := opt.Table
	if tab == nil {
		var err error
		if tab, err = mount.Self(); err != nil {
			return fmt.Errorf("reading the mount table: %w", err)
		}
	}
	if err := CheckFree(tab, ms); err != nil {
		return err
	}
	for i, m := range ms {
		var err error
		if opt.BeforeEach != nil {
			err = opt.BeforeEach(i, m)
		}
		if err == nil {
			err = MountOne(m)
		}
		if err != nil {
			return &StackError{Index: i, Total: len(ms), Target: m.Target, Err: err, UndoErr: unmountAll(ms[:i])}
		}
	}
	return nil
}

// unmountAll unmounts ms newest first, going on past failures, and
// returns every failure.
func unmountAll(ms []Mount) error {
	var errs []error
	for i := len(ms) - 1; i >= 0; i-- {
		if err := Unmount(ms[i].Target); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Unstack unmounts ms newest first, all or nothing: when one cannot be
// unmounted (typically EBUSY), the ones already unmounted are mounted
// again so the stack stays whole, and the error says so. Targets that are
// no longer overlay mounts (tab says so) are skipped.
func Unstack(ms []Mount) error {
	tab, err := mount.Self()
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	var done []Mount
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		cur := tab.Lookup(m.Target)
		if cur == nil {
			continue // already gone
		}
		if u, _ := mount.SuperOption(cur, "upperdir"); cur.FSType != FSType || filepath.Clean(u) != filepath.Clean(m.Upper) {
			err := fmt.Errorf("%s: the topmost mount there is %s %s, not ovpkg's overlay (unmount it first): %w",
				m.Target, cur.FSType, cur.Source, unix.EBUSY)
			return redo(done, err)
		}
		if err := Unmount(m.Target); err != nil {
			return redo(done, err)
		}
		done = append(done, m)
	}
	return nil
}

// redo mounts again, oldest first, the overlays Unstack already took down
// (done is newest first) and returns err, with any re-mount failure.
func redo(done []Mount, err error) error {
	var errs []error
	for j := len(done) - 1; j >= 0; j-- {
		if rerr := MountOne(done[j]); rerr != nil {
			errs = append(errs, rerr)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w; re-mounting the overlays already removed failed too: %v", err, errors.Join(errs...))
	}
	if len(done) > 0 {
		return fmt.Errorf("%w (the %d overlay(s) already removed were mounted again)", err, len(done))
	}
	return err
}
