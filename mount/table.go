package mount

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Info is one line of mountinfo.
type Info = mountinfo.Info

// Table is a snapshot of a mount table, in mountinfo order (parents
// before children, older before newer).
type Table []*Info

// SelfMountinfo is where the calling process's mount table is read from.
const SelfMountinfo = "/proc/self/mountinfo"

// ReadTable parses mountinfo text (a fixture in tests).
func ReadTable(r io.Reader) (Table, error) {
	infos, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, err
	}
	return Table(infos), nil
}

// LoadTable reads a mountinfo file such as SelfMountinfo.
func LoadTable(path string) (Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadTable(f)
}

// Self reads the calling process's mount table.
func Self() (Table, error) { return LoadTable(SelfMountinfo) }

// Lookup returns the topmost mount at exactly target (a cleaned absolute
// path), or nil.
func (t Table) Lookup(target string) *Info {
	target = filepath.Clean(target)
	for i := len(t) - 1; i >= 0; i-- {
		if t[i].Mountpoint == target {
			return t[i]
		}
	}
	return nil
}

// IsMountPoint says whether target is a mount point in t.
func (t Table) IsMountPoint(target string) bool { return t.Lookup(target) != nil }

// Under lists the mounts at or below dir, deepest and newest first: the
// order in which they can be unmounted.
func (t Table) Under(dir string) []*Info {
	dir = filepath.Clean(dir)
	var out []*Info
	for _, m := range t {
		if dir == "/" || m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m)
		}
	}
	idx := make(map[*Info]int, len(out))
	for i, m := range out {
		idx[m] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := strings.Count(out[i].Mountpoint, "/"), strings.Count(out[j].Mountpoint, "/")
		if di != dj {
			return di > dj
		}
		return idx[out[i]] > idx[out[j]]
	})
	return out
}

// Dev returns the device number (st_dev) of a mount, as stat(2) reports it
// for files on that mount.
func Dev(m *Info) uint64 { return unix.Mkdev(uint32(m.Major), uint32(m.Minor)) }

// SuperOption returns the value of key=value in a mount's superblock
// options (mountinfo's last field), e.g. "upperdir" of an overlay.
func SuperOption(m *Info, key string) (string, bool) {
	for _, o := range splitOptions(m.VFSOptions) {
		k, v, ok := strings.Cut(o, "=")
		if k == key {
			if !ok {
				return "", true
			}
			return v, true
		}
	}
	return "", false
}

// SuperOptions returns a mount's superblock options (mountinfo's last
// field) one by one, unescaped: "upperdir=/x", "lowerdir+=/y", "index=off".
func SuperOptions(m *Info) []string { return splitOptions(m.VFSOptions) }

// splitOptions splits a comma-separated option list; overlayfs escapes
// commas inside paths with a backslash.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if cur.Len() > 0 || len(s) > 0 {
		out = append(out, cur.String())
	}
	return out
}

// OverlayUsingUpper returns the overlay mount whose upperdir is upper
// (compared after cleaning), or nil. overlayfs with index=off only warns
// when two mounts share an upperdir; callers refuse instead.
func (t Table) OverlayUsingUpper(upper string) *Info {
	upper = filepath.Clean(upper)
	for _, m := range t {
		if m.FSType != "overlay" {
			continue
		}
		if u, ok := SuperOption(m, "upperdir"); ok && filepath.Clean(u) == upper {
			return m
		}
	}
	return nil
}

// Source returns the mounts whose source device is dev (e.g. /dev/loop3).
func (t Table) Source(dev string) []*Info {
	var out []*Info
	for _, m := range t {
		if m.Source == dev {
			out = append(out, m)
		}
	}
	return out
}
