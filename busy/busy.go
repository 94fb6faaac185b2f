package busy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holder is one use of a checked mount by one process.
type Holder struct {
	PID     int    `json:"pid"`
	Command string `json:"command"` // comm, or argv[0] when comm is unreadable
	Use     string `json:"use"`     // "cwd", "root", "exe", "fd 5", "mmap"
	Path    string `json:"path"`    // the path as the process sees it
}

// String formats h as "PID 1234 (bash) cwd /usr/local".
func (h Holder) String() string {
	return fmt.Sprintf("PID %d (%s) %s %s", h.PID, h.Command, h.Use, h.Path)
}

// Scan lists the holders of the devices devs among the processes under
// procDir (normally "/proc"), ordered by PID. devs are st_dev numbers as
// unix.Stat_t.Dev and unix.Mkdev encode them: for a mount, the major:minor
// that mountinfo shows, which is also what stat of its mount point (a
// directory) returns; for an overlay pass the overlay's own number, files
// reached through it match by mount even though stat reports per-layer
// pseudo devices for them. The calling process is included (see
// ScanExcept).
func Scan(procDir string, devs []uint64) ([]Holder, error) {
	return ScanExcept(procDir, devs, nil)
}

// ScanExcept is Scan that leaves out the processes whose PIDs are in
// exclude (for example os.Getpid()).
func ScanExcept(procDir string, devs []uint64, exclude []int) ([]Holder, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("busy: reading %s: %w", procDir, err)
	}
	want := make(map[uint64]bool, len(devs))
	for _, d := range devs {
		want[d] = true
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || slices.Contains(exclude, pid) {
			continue
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	sc := &scanner{procDir: procDir, want: want, sdev: map[uint64]uint64{}, read: map[string]bool{},
		buf: make([]byte, 16*1024)}
	var out []Holder
	for _, pid := range pids {
		hs, err := sc.scanPID(pid)
		if err != nil {
			if gone(err) {
				continue
			}
			return out, err
		}
		out = append(out, hs...)
	}
	return out, nil
}

// gone reports errors that mean the process exited (or is a kernel
// thread, or we may not look at it) while we looked.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

type fileID struct{ dev, ino uint64 }

// scanner holds what one Scan learns along the way.
type scanner struct {
	procDir string
	want    map[uint64]bool
	// sdev maps mount IDs (global across mount namespaces) to the device
	// number of the mounted filesystem as mountinfo shows it (0 when the
	// ID could not be found).
	sdev map[uint64]uint64
	read map[string]bool // mountinfo files already read
	buf  []byte          // line buffer shared by the parsers
}

func (s *scanner) scanPID(pid int) ([]Holder, error) {
	dir := filepath.Join(s.procDir, strconv.Itoa(pid))
	var out []Holder
	var exe fileID
	exePath, _ := os.Readlink(filepath.Join(dir, "exe"))
	for _, use := range []string{"cwd", "root", "exe"} {
		id, path, ok := s.check(filepath.Join(dir, use), dir)
		if use == "exe" {
			exe = id
		}
		if ok {
			out = append(out, Holder{PID: pid, Command: "", Use: use, Path: path})
		}
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil && !gone(err) && !errors.Is(err, unix.EACCES) {
		return nil, err
	}
	var fdNums []int
	for _, e := range fds {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			fdNums = append(fdNums, n)
		}
	}
	slices.Sort(fdNums)
	for _, n := range fdNums {
		if _, path, ok := s.check(filepath.Join(dir, "fd", strconv.Itoa(n)), dir); ok {
			out = append(out, Holder{PID: pid, Command: "", Use: "fd " + strconv.Itoa(n), Path: path})
		}
	}
	f, err := os.Open(filepath.Join(dir, "maps"))
	if err == nil {
		maps, err := parseMaps(f, s.want, s.buf)
		f.Close()
		if err != nil && !gone(err) {
			return nil, fmt.Errorf("busy: %s/maps: %w", dir, err)
		}
		for _, m := range maps {
			if m.Ino == exe.ino && (m.Dev == exe.dev || m.Path == exePath) {
				// The executable, already reported as "exe" (through an
				// overlay, maps shows the overlay's device where stat
				// shows a layer's pseudo device).
				continue
			}
			out = append(out, Holder{PID: pid, Command: "", Use: "mmap", Path: m.Path})
		}
	}
	if len(out) > 0 {
		// Only holders need a name: reading comm for every process
		// would cost a fifth of the scan.
		cmd := command(dir)
		for i := range out {
			out[i].Command = cmd
		}
	}
	return out, nil
}

// check stats the magic link at p (following it) and reports whether its
// target lies on one of the wanted devices, or is the block device of one
// of them (a process holding /dev/loopN open keeps an autoclear loop
// device attached after the unmount), with the link's text. A
// target matches when its st_dev is wanted, or when the filesystem of the
// mount it was reached through is: overlayfs reports per-layer pseudo
// st_dev numbers for non-directories (see docs/busy.md), so the mount ID
// (statx STATX_MNT_ID) is mapped to the overlay's own device through
// mountinfo. procPID is the process's /proc directory.
func (s *scanner) check(p, procPID string) (fileID, string, bool) {
	var stx unix.Statx_t
	var id fileID
	match := false
	err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &stx)
	if err == unix.ENOSYS {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return id, "", false
		}
		id = fileID{uint64(st.Dev), uint64(st.Ino)}
		// A block device node whose device is wanted (the card's loop
		// device held open) counts too.
		match = s.want[id.dev] || st.Mode&unix.S_IFMT == unix.S_IFBLK && s.want[uint64(st.Rdev)]
	} else if err != nil {
		return id, "", false
	} else {
		id = fileID{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino}
		match = s.want[id.dev] ||
			stx.Mode&unix.S_IFMT == unix.S_IFBLK && s.want[unix.Mkdev(stx.Rdev_major, stx.Rdev_minor)]
		if !match && stx.Mask&unix.STATX_MNT_ID != 0 {
			if d := s.mountDev(stx.Mnt_id, procPID); d != 0 {
				match = s.want[d]
			}
		}
	}
	if !match {
		return id, "", false
	}
	path, err := os.Readlink(p)
	if err != nil {
		path = p
	}
	return id, path, true
}

// mountDev returns the device of the filesystem mounted as mount ID id,
// from the process's mountinfo (it may be in another mount namespace),
// else from this process's; 0 when unknown.
func (s *scanner) mountDev(id uint64, procPID string) uint64 {
	if d, ok := s.sdev[id]; ok {
		return d
	}
	for _, f := range []string{filepath.Join(procPID, "mountinfo"), "/proc/self/mountinfo"} {
		if s.read[f] {
			continue
		}
		s.read[f] = true
		if r, err := os.Open(f); err == nil {
			parseMountinfo(r, s.sdev, s.buf)
			r.Close()
		}
		if d, ok := s.sdev[id]; ok {
			return d
		}
	}
	s.sdev[id] = 0
	return 0
}

// ParseMountinfo adds "mount ID -> device" (st_dev encoding of the
// major:minor field) for each line of /proc/PID/mountinfo text to m.
func ParseMountinfo(r io.Reader, m map[uint64]uint64) error {
	return parseMountinfo(r, m, make([]byte, 4096))
}

func parseMountinfo(r io.Reader, m map[uint64]uint64, buf []byte) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(buf, 1<<20)
	var f [3][]byte
	for sc.Scan() {
		// 612 22 0:39 / /usr rw,relatime - overlay ov rw,...
		if _, ok := fields(sc.Bytes(), f[:]); !ok {
			continue
		}
		id, ok := parseUint(f[0], 10)
		if !ok {
			continue
		}
		if dev, ok := parseDev(f[2], 10); ok {
			m[id] = dev
		}
	}
	return sc.Err()
}

// fields splits the first len(f) space-separated fields of line into f
// and returns the rest of the line after them.
func fields(line []byte, f [][]byte) ([]byte, bool) {
	for i := range f {
		line = bytes.TrimLeft(line, " ")
		j := bytes.IndexByte(line, ' ')
		if j < 0 {
			j = len(line)
		}
		if j == 0 {
			return nil, false
		}
		f[i], line = line[:j], line[j:]
	}
	return bytes.TrimLeft(line, " "), true
}

// parseUint parses an unsigned number without allocating.
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

// parseDev parses "major:minor" into the st_dev encoding.
func parseDev(b []byte, base uint64) (uint64, bool) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return 0, false
	}
	major, ok1 := parseUint(b[:i], base)
	minor, ok2 := parseUint(b[i+1:], base)
	if !ok1 || !ok2 || major > 0xffffffff || minor > 0xffffffff {
		return 0, false
	}
	return unix.Mkdev(uint32(major), uint32(minor)), true
}

// command returns the process's comm, or argv[0] of its cmdline.
func command(dir string) string {
	if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		if s := strings.TrimSuffix(string(b), "\n"); s != "" {
			return s
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		arg0, _, _ := strings.Cut(string(b), "\x00")
		if arg0 != "" {
			return filepath.Base(arg0)
		}
	}
	return "?"
}

// Mapping is a file mapped into a process, from one line of
// /proc/PID/maps.
type Mapping struct {
	Dev  uint64 // st_dev encoding of the maps "major:minor" field
	Ino  uint64
	Path string
}

// ParseMaps reads /proc/PID/maps text and returns each distinct mapped
// file (by device and inode) whose device is in want, or every mapped
// file when want is nil. Anonymous and special mappings (inode 0) are
// skipped.
func ParseMaps(r io.Reader, want map[uint64]bool) ([]Mapping, error) {
	return parseMaps(r, want, make([]byte, 4096))
}

// parseMaps is ParseMaps with a caller's line buffer; it allocates only
// for the mappings it returns.
func parseMaps(r io.Reader, want map[uint64]bool, buf []byte) ([]Mapping, error) {
	var out []Mapping
	var seen map[fileID]bool
	sc := bufio.NewScanner(r)
	sc.Buffer(buf, 1<<20)
	var f [5][]byte
	for sc.Scan() {
		// 7f2c4d5e6000-7f2c4d5e8000 r--p 00000000 fd:00 1234  /usr/lib/x.so
		line := sc.Bytes()
		rest, ok := fields(line, f[:])
		if !ok {
			continue
		}
		ino, ok := parseUint(f[4], 10)
		if !ok {
			return out, fmt.Errorf("bad inode in maps line %q", line)
		}
		if ino == 0 {
			continue
		}
		dev, ok := parseDev(f[3], 16)
		if !ok {
			return out, fmt.Errorf("bad device in maps line %q", line)
		}
		if want != nil && !want[dev] {
			continue
		}
		id := fileID{dev, ino}
		if seen[id] {
			continue
		}
		if seen == nil {
			seen = map[fileID]bool{}
		}
		seen[id] = true
		out = append(out, Mapping{Dev: dev, Ino: ino, Path: string(rest)})
	}
	return out, sc.Err()
}
