package selfexec

import (
	"bufio"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mapDev returns the device (st_dev encoding) of the first mapping of
// inode ino in /proc/PID/maps text.
func mapDev(r io.Reader, ino uint64) (uint64, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		if n, err := strconv.ParseUint(f[4], 10, 64); err != nil || n != ino {
			continue
		}
		ma, mi, ok := strings.Cut(f[3], ":")
		if !ok {
			continue
		}
		major, err1 := strconv.ParseUint(ma, 16, 32)
		minor, err2 := strconv.ParseUint(mi, 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return unix.Mkdev(uint32(major), uint32(minor)), true
	}
	return 0, false
}
