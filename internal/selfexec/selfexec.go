package selfexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Reexecuted reports whether this process is the in-memory copy started
// by FromMemory with the same marker.
func Reexecuted(marker string) bool {
	return os.Getenv(marker) != ""
}

// Needed reports whether the running executable lies on one of devs
// (st_dev numbers), as /proc/self/exe and the executable's mapping in
// /proc/self/maps report it (overlayfs may give either the overlay's or a
// layer's device; see docs/busy.md).
func Needed(devs []uint64) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return false, fmt.Errorf("selfexec: stat /proc/self/exe: %w", err)
	}
	if slices.Contains(devs, uint64(st.Dev)) {
		return true, nil
	}
	dev, ok := exeMapDev(uint64(st.Ino))
	return ok && slices.Contains(devs, dev), nil
}

// FromMemory re-executes the running program from a memfd copy of
// /proc/self/exe when the executable lives on one of the given mount
// st_dev numbers (or always if force), after chdir("/"). marker is an env
// variable set in the child so it does not loop. Returns nil without
// exec when not needed or already re-executed; on success it does not return.
//
// The new program gets the same argv (so a multi-call binary keeps its
// name) and environment plus marker=1. Other open file descriptors that
// are not close-on-exec are inherited, as with any exec.
func FromMemory(marker string, devs []uint64, force bool) error {
	if Reexecuted(marker) {
		return nil
	}
	if !force {
		need, err := Needed(devs)
		if err != nil || !need {
			return err
		}
	}
	mem, err := Copy()
	if err != nil {
		return err
	}
	defer mem.Close()
	env := append(os.Environ(), marker+"=1")
	if os.Getenv(CwdEnv) == "" {
		if wd, err := os.Getwd(); err == nil {
			env = append(env, CwdEnv+"="+wd)
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("selfexec: chdir /: %w", err)
	}
	// The memfd is close-on-exec: the kernel opens the new executable
	// through the path before it closes such descriptors, so exec works
	// for an ELF binary and the descriptor does not leak into the child.
	path := "/proc/self/fd/" + strconv.Itoa(int(mem.Fd()))
	err = unix.Exec(path, os.Args, env)
	return fmt.Errorf("selfexec: exec %s (memfd copy of %s): %w", path, exeName(), err)
}

// CwdEnv carries the directory the program was started in across the
// re-exec: FromMemory moves to / first (a working directory on an overlay
// pins it), so relative arguments must be resolved against Cwd().
const CwdEnv = "OVPKG_START_CWD"

// Cwd returns the directory the program was started in: the working
// directory, or after FromMemory re-executed it, the one before the move
// to /.
func Cwd() (string, error) {
	if d := os.Getenv(CwdEnv); d != "" {
		return d, nil
	}
	return os.Getwd()
}

// Copy returns a close-on-exec memfd holding a copy of
// /proc/self/exe. It asks for MFD_EXEC (Linux 6.3+, needed to exec a
// memfd when vm.memfd_noexec=1) and retries without it on older kernels.
func Copy() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("selfexec: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("ovpkg", unix.MFD_CLOEXEC|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("ovpkg", unix.MFD_CLOEXEC)
	}
	if errors.Is(err, unix.EACCES) {
		b, _ := os.ReadFile("/proc/sys/vm/memfd_noexec")
		return nil, fmt.Errorf("selfexec: memfd_create(MFD_EXEC): %w (vm.memfd_noexec=%s forbids executable memfds)", err, strings.TrimSpace(string(b)))
	}
	if err != nil {
		return nil, fmt.Errorf("selfexec: memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:ovpkg")
	if _, err := io.Copy(mem, src); err != nil {
		mem.Close()
		return nil, fmt.Errorf("selfexec: copying %s to memfd: %w", exeName(), err)
	}
	return mem, nil
}

func exeName() string {
	p, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return "/proc/self/exe"
	}
	return p
}

// exeMapDev returns the device of the executable's mapping (by inode) in
// /proc/self/maps.
func exeMapDev(ino uint64) (uint64, bool) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return mapDev(f, ino)
}
