package busy

import (
	"bufio"
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

// Scan lists the holders of the devices devs (st_dev numbers, as
// unix.Stat_t.Dev and unix.Mkdev encode them) among the processes under
// procDir (normally "/proc"), ordered by PID. It skips the calling process
// only when its PID is in exclude; see ScanExcept.
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
	var out []Holder
	for _, pid := range pids {
		hs, err := scanPID(procDir, pid, want)
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

func scanPID(procDir string, pid int, want map[uint64]bool) ([]Holder, error) {
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	cmd := command(dir)
	var out []Holder
	var exe fileID
	for _, use := range []string{"cwd", "root", "exe"} {
		id, path, ok := check(filepath.Join(dir, use), want)
		if use == "exe" {
			exe = id
		}
		if ok {
			out = append(out, Holder{PID: pid, Command: cmd, Use: use, Path: path})
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
		if _, path, ok := check(filepath.Join(dir, "fd", strconv.Itoa(n)), want); ok {
			out = append(out, Holder{PID: pid, Command: cmd, Use: "fd " + strconv.Itoa(n), Path: path})
		}
	}
	f, err := os.Open(filepath.Join(dir, "maps"))
	if err == nil {
		maps, err := ParseMaps(f, want)
		f.Close()
		if err != nil && !gone(err) {
			return nil, fmt.Errorf("busy: %s/maps: %w", dir, err)
		}
		for _, m := range maps {
			if (fileID{m.Dev, m.Ino}) == exe {
				continue // the executable, already reported as "exe"
			}
			out = append(out, Holder{PID: pid, Command: cmd, Use: "mmap", Path: m.Path})
		}
	}
	return out, nil
}

// check stats the magic link at p (following it) and reports whether its
// target lies on one of the wanted devices, with the link's text.
func check(p string, want map[uint64]bool) (fileID, string, bool) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fileID{}, "", false
	}
	id := fileID{uint64(st.Dev), uint64(st.Ino)}
	if !want[id.dev] {
		return id, "", false
	}
	path, err := os.Readlink(p)
	if err != nil {
		path = p
	}
	return id, path, true
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
	var out []Mapping
	seen := map[fileID]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// 7f2c4d5e6000-7f2c4d5e8000 r--p 00000000 fd:00 1234  /usr/lib/x.so
		line := sc.Text()
		var fields [5]string
		rest := line
		ok := true
		for i := range fields {
			rest = strings.TrimLeft(rest, " ")
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			if f == "" {
				ok = false
				break
			}
			fields[i] = f
		}
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(fields[4], 10, 64)
		if err != nil {
			return out, fmt.Errorf("bad inode in maps line %q", line)
		}
		if ino == 0 {
			continue
		}
		ma, mi, found := strings.Cut(fields[3], ":")
		if !found {
			return out, fmt.Errorf("bad device in maps line %q", line)
		}
		major, err1 := strconv.ParseUint(ma, 16, 32)
		minor, err2 := strconv.ParseUint(mi, 16, 32)
		if err1 != nil || err2 != nil {
			return out, fmt.Errorf("bad device in maps line %q", line)
		}
		dev := unix.Mkdev(uint32(major), uint32(minor))
		if want != nil && !want[dev] {
			continue
		}
		id := fileID{dev, ino}
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, Mapping{Dev: dev, Ino: ino, Path: strings.TrimLeft(rest, " ")})
	}
	return out, sc.Err()
}
