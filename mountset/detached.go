package mountset

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/mount"
)

// DetachedOverlay is an old overlay that a restack took off its directory
// with umount2(MNT_DETACH) because processes still held files on it: it
// lives on, out of every mount table, until the last of them lets go.
// Upper is its upperdir (never made the upper of another mount while it
// may linger), Layers the layer ids it stacked (bottom to top, the last
// is the upper's), Dev its st_dev as mountinfo showed it before the
// detach.
type DetachedOverlay struct {
	Target string   `json:"target"`
	Dev    uint64   `json:"dev"`
	Upper  string   `json:"upper"`
	Layers []string `json:"layers,omitempty"`
	// MntID is the mount's unique ID (statx STATX_MNT_ID_UNIQUE, Linux
	// 6.8+; never reused), 0 when the kernel has none. Files reached
	// through a detached overlay report per-layer pseudo st_dev numbers
	// and a mount that no mountinfo lists, so holders of open files are
	// found by this ID.
	MntID uint64 `json:"mnt_id,omitempty"`
}

// MountID returns the unique mount ID of the mount whose root is dir, 0
// when the kernel does not report one.
func MountID(dir string) uint64 {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil {
		return 0
	}
	if stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0
	}
	return stx.Mnt_id
}

// scanMountIDs finds the processes under procDir (except this one) whose
// cwd, root, executable or an open file lies on one of the mounts ids
// (unique mount IDs).
func scanMountIDs(procDir string, ids map[uint64]bool) map[uint64][]busy.Holder {
	out := map[uint64][]busy.Holder{}
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		dir := filepath.Join(procDir, e.Name())
		links := []string{"cwd", "root", "exe"}
		if fds, err := os.ReadDir(filepath.Join(dir, "fd")); err == nil {
			for _, f := range fds {
				links = append(links, "fd/"+f.Name())
			}
		}
		var cmd string
		for _, l := range links {
			var stx unix.Statx_t
			if unix.Statx(unix.AT_FDCWD, filepath.Join(dir, l), 0, unix.STATX_MNT_ID_UNIQUE, &stx) != nil ||
				stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 || !ids[stx.Mnt_id] {
				continue
			}
			if cmd == "" {
				b, _ := os.ReadFile(filepath.Join(dir, "comm"))
				cmd = strings.TrimSpace(string(b))
			}
			path, _ := os.Readlink(filepath.Join(dir, l))
			out[stx.Mnt_id] = append(out[stx.Mnt_id], busy.Holder{PID: pid, Command: cmd, Use: strings.Replace(l, "/", " ", 1), Path: path})
		}
	}
	return out
}

// Lingering is a detached overlay that is still held, with its holders.
type Lingering struct {
	DetachedOverlay
	Holders []busy.Holder `json:"holders"`
}

// MarshalJSON writes the holders one entry per process (busy.Process),
// not one per mapped file.
func (l Lingering) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		DetachedOverlay
		Holders []busy.Process `json:"holders"`
	}{l.DetachedOverlay, busy.Summarize(l.Holders)})
}

// String says it plainly: "the old overlay of /usr stays in use by PID
// 123 (sleep) until it exits".
func (l Lingering) String() string {
	what := "the old overlay of " + l.Target + " stays"
	if strings.Contains(l.Target, ", ") {
		what = "the old overlays of " + l.Target + " stay"
	}
	return fmt.Sprintf("%s in use by %s until %s", what, HolderNames(l.Holders), exitWord(l.Holders))
}

func exitWord(hs []busy.Holder) string {
	if len(pids(hs)) > 1 {
		return "they exit"
	}
	return "it exits"
}

func pids(hs []busy.Holder) []int {
	var out []int
	seen := map[int]bool{}
	for _, h := range hs {
		if !seen[h.PID] {
			seen[h.PID] = true
			out = append(out, h.PID)
		}
	}
	return out
}

// HolderNames lists the processes of hs once each: "PID 123 (sleep), PID
// 456 (bash)".
func HolderNames(hs []busy.Holder) string {
	var out []string
	seen := map[int]bool{}
	for _, h := range hs {
		if !seen[h.PID] {
			seen[h.PID] = true
			out = append(out, fmt.Sprintf("PID %d (%s)", h.PID, h.Command))
		}
	}
	return strings.Join(out, ", ")
}

// CheckDetached finds, for each of r's detached overlays, the processes
// (other than this one) that still hold it. Those nobody holds are gone
// (the kernel frees a detached mount with its last reference). A detached
// overlay whose device number now belongs to a mount in tab is gone too:
// device numbers are unique among live filesystems, so the number was
// freed and reused. It changes nothing; see PruneDetached.
func CheckDetached(procDir string, tab mount.Table, r *Record) (still []Lingering, gone []DetachedOverlay, err error) {
	if len(r.Detached) == 0 {
		return nil, nil, nil
	}
	if procDir == "" {
		procDir = "/proc"
	}
	inTable := map[uint64]bool{}
	for _, m := range tab {
		inTable[mount.Dev(m)] = true
	}
	ids := map[uint64]bool{}
	for _, d := range r.Detached {
		if d.MntID != 0 {
			ids[d.MntID] = true
		}
	}
	var byID map[uint64][]busy.Holder
	if len(ids) > 0 {
		byID = scanMountIDs(procDir, ids)
	}
	for _, d := range r.Detached {
		var hs []busy.Holder
		if !inTable[d.Dev] {
			// Directories and memory mappings show the overlay's own
			// device number.
			var err error
			hs, err = busy.ScanExcept(procDir, []uint64{d.Dev}, []int{os.Getpid()})
			if err != nil {
				return nil, nil, fmt.Errorf("looking for processes that hold the old overlays: %w", err)
			}
		}
		if d.MntID != 0 {
			hs = mergeHolders(hs, byID[d.MntID])
		}
		for i, h := range hs {
			// Paths on a detached mount read as if it were mounted on /.
			t := filepath.Clean(d.Target)
			if strings.HasPrefix(h.Path, "/") && h.Path != t && !strings.HasPrefix(h.Path, t+"/") {
				hs[i].Path = filepath.Join(t, h.Path)
			}
		}
		if len(hs) > 0 {
			still = append(still, Lingering{DetachedOverlay: d, Holders: hs})
		} else {
			gone = append(gone, d)
		}
	}
	return still, gone, nil
}

// PruneDetached drops from r the detached overlays nobody holds any more
// and returns the ones still held. It reports whether r changed (the
// caller, holding the lock, writes the record then).
func PruneDetached(procDir string, tab mount.Table, r *Record) ([]Lingering, bool, error) {
	still, gone, err := CheckDetached(procDir, tab, r)
	if err != nil || len(gone) == 0 {
		return still, false, err
	}
	r.Detached = nil
	for _, l := range still {
		r.Detached = append(r.Detached, l.DetachedOverlay)
	}
	return still, true, nil
}

// UpperInUse reports whether upper is the upperdir of one of r's detached
// overlays (which may still linger).
func (r *Record) UpperInUse(upper string) bool {
	for _, d := range r.Detached {
		if filepath.Clean(d.Upper) == filepath.Clean(upper) {
			return true
		}
	}
	return false
}

// LayerInUse reports whether layer id is the upper layer of one of r's
// detached overlays.
func (r *Record) LayerInUse(id string) bool {
	for _, d := range r.Detached {
		if len(d.Layers) > 0 && d.Layers[len(d.Layers)-1] == id {
			return true
		}
	}
	return false
}

// pruneLocked prunes r's detached overlays and writes the record when
// that changed it (the caller holds the lock).
func pruneLocked(opt Options, runDir string, tab mount.Table, r *Record) ([]Lingering, error) {
	still, changed, err := PruneDetached(opt.procDir(), tab, r)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := writeRecord(runDir, r); err != nil {
			return nil, err
		}
	}
	return still, nil
}

// lingeringError is eject's refusal while old overlays linger.
func lingeringError(still []Lingering) error {
	var hs []busy.Holder
	var ts []string
	for _, l := range still {
		hs = append(hs, l.Holders...)
		ts = append(ts, l.Target)
	}
	what := "the old overlay of " + strings.Join(uniq(ts), ", ") + " (detached by a restack while in use; it keeps the card busy) is"
	if len(uniq(ts)) > 1 {
		what = "the old overlays of " + strings.Join(uniq(ts), ", ") + " (detached by a restack while in use; they keep the card busy) are"
	}
	return &BusyError{What: what, Holders: hs}
}

// mergeHolders adds to a the holders of b it does not have (same PID,
// use and path), ordered by PID.
func mergeHolders(a, b []busy.Holder) []busy.Holder {
	for _, h := range b {
		if !slices.ContainsFunc(a, func(x busy.Holder) bool { return x.PID == h.PID && x.Use == h.Use && x.Path == h.Path }) {
			a = append(a, h)
		}
	}
	slices.SortStableFunc(a, func(x, y busy.Holder) int { return x.PID - y.PID })
	return a
}

func uniq(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
