// Package selfexec re-executes the running program from an in-memory copy
// (memfd_create + exec of /proc/self/fd/N) so that the program no longer
// pins the filesystem its executable lives on. uovmount and eject use it
// when ovpkg itself is installed under an overlaid directory such as
// /usr/bin: otherwise the running binary keeps the overlay busy and its
// unmount fails with EBUSY.
//
// It owns: deciding whether a re-exec is needed (the executable's st_dev
// is one of the mounts about to go, or force), the memfd copy (MFD_EXEC
// where the kernel knows it, for vm.memfd_noexec), chdir("/") so the
// working directory does not pin anything either, and the marker
// environment variable that stops the re-executed program from doing it
// again.
//
// It does NOT help a dynamically linked program (its shared libraries
// stay mapped from their files: ovpkg is built with CGO_ENABLED=0), close
// other open files of the process, or find other processes that hold the
// mount (see busy/).
package selfexec
