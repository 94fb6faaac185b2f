package qemutest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/kmod"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Package string // linux-image-6.1.0-NN-amd64
	Release string // 6.1.0-NN-amd64
	Vmlinuz string
	Modules string // .../lib/modules/<release>, with a modules.dep
}

var (
	kernelMu sync.Mutex
	kernel   *Kernel
)

// DebianKernel returns Debian's current amd64 kernel: the package
// linux-image-amd64 depends on, downloaded and unpacked once into the
// test cache (never installed). Its modules get a modules.dep written
// from their own information (the package's maintainer script would run
// depmod). Skips (fails under CI) without the archive.
func DebianKernel(t testing.TB) *Kernel {
	t.Helper()
	kernelMu.Lock()
	defer kernelMu.Unlock()
	if kernel != nil {
		return kernel
	}
	{
		nstest.Need(t, "apt-cache")
		out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
		pkg := ""
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				pkg = f[1]
				break
			}
		}
		if err != nil || pkg == "" {
			nstest.Skip(t, "cannot tell which kernel linux-image-amd64 depends on (apt-get update?): %v", err)
		}
		dir := nstest.ExtractDeb(t, pkg)
		rel := strings.TrimPrefix(pkg, "linux-image-")
		k := &Kernel{Package: pkg, Release: rel, Vmlinuz: filepath.Join(dir, "boot", "vmlinuz-"+rel), Modules: filepath.Join(dir, "lib", "modules", rel)}
		if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
			unlock := nstest.Lock(t, filepath.Dir(dir))
			if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
				if err := kmod.Generate(k.Modules); err != nil {
					t.Fatalf("modules.dep for %s: %v", pkg, err)
				}
			}
			unlock()
		}
		kernel = k
	}
	return kernel
}

// Busybox returns the static busybox of Debian's busybox-static.
func Busybox(t testing.TB) string {
	t.Helper()
	return filepath.Join(nstest.ExtractDeb(t, "busybox-static"), "bin", "busybox")
}

// BusyboxApplets lists the applets of a busybox binary.
func BusyboxApplets(t testing.TB, bb string) []string {
	t.Helper()
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", bb, err)
	}
	return strings.Fields(string(out))
}
