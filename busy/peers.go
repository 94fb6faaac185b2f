package busy

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PipelinePeers lists the processes at the other end of the pipes on
// pid's standard input, output and error: in `ovpkg install x | tee log`
// tee is ovpkg's peer. A peer holds the same pipe (same inode) open for
// the other direction, so a background job that merely shares the
// terminal pipeline's output (it holds the write end too) is not one.
// Peers end with the pipeline; callers that name holders leave them out
// (they still hold what they hold, and a restack still has to detach it).
func PipelinePeers(procDir string, pid int) []int {
	self := filepath.Join(procDir, strconv.Itoa(pid))
	mine := map[string]int{} // "pipe:[ino]" -> our access mode
	for fd := 0; fd <= 2; fd++ {
		n := strconv.Itoa(fd)
		l, err := os.Readlink(filepath.Join(self, "fd", n))
		if err != nil || !strings.HasPrefix(l, "pipe:") {
			continue
		}
		if mode, ok := accMode(filepath.Join(self, "fdinfo", n)); ok {
			mine[l] = mode
		}
	}
	if len(mine) == 0 {
		return nil
	}
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p <= 0 || p == pid {
			continue
		}
		dir := filepath.Join(procDir, e.Name())
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, f := range fds {
			l, err := os.Readlink(filepath.Join(dir, "fd", f.Name()))
			if err != nil {
				continue
			}
			ours, ok := mine[l]
			if !ok {
				continue
			}
			if mode, ok := accMode(filepath.Join(dir, "fdinfo", f.Name())); ok && mode != ours && mode != 2 && ours != 2 {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// accMode reads the O_ACCMODE bits of an fdinfo file's flags (0 read,
// 1 write, 2 both).
func accMode(fdinfo string) (int, bool) {
	f, err := os.Open(fdinfo)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flags:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			if err != nil {
				return 0, false
			}
			return int(n & 3), true
		}
	}
	return 0, false
}
