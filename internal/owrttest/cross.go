package owrttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// Cross is a target the suite ships for, run under qemu-user.
type Cross struct {
	Name string   // "mipsle", "armv7" (as in dist/linux-NAME)
	Env  []string // GOARCH and friends
	Qemu string   // Debian's qemu-user-static program for it
}

// Crosses are the 32-bit targets of the routers and handhelds.
var Crosses = []Cross{
	{Name: "mipsle", Env: []string{"GOARCH=mipsle", "GOMIPS=softfloat"}, Qemu: "qemu-mipsel-static"},
	{Name: "armv7", Env: []string{"GOARCH=arm", "GOARM=7"}, Qemu: "qemu-arm-static"},
}

// CrossBin builds the suite (CGO_ENABLED=0, with the test hooks, as
// `make cross` builds it plus the tag) for c into a directory of the test
// (removed with it) and returns the binary's path.
func CrossBin(t testing.TB, c Cross) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ovpkg-"+c.Name)
	cmd := exec.Command("go", "build", "-trimpath", "-tags", nstest.TestTags, "-o", p, "./cmd/ovpkg")
	cmd.Dir = nstest.ModuleRoot()
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), c.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building for %s: %v\n%s", c.Name, err, out)
	}
	return p
}

// InstallCross puts c's qemu-user program and cross build at the top of
// the root (/qemu-..., /ovpkg-NAME: outside every overlaid directory, so
// that neither pins an overlay) and returns the command line prefix that
// runs the cross build inside the root: "/qemu-mipsel-static
// /ovpkg-mipsle". qemu runs explicitly: binfmt_misc is never touched.
func (r *Root) InstallCross(t testing.TB, c Cross) string {
	t.Helper()
	nstest.Need(t, c.Qemu)
	q, _ := exec.LookPath(c.Qemu)
	if err := copyFile(q, filepath.Join(r.Dir, c.Qemu), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(CrossBin(t, c), filepath.Join(r.Dir, "ovpkg-"+c.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("/%s /ovpkg-%s", c.Qemu, c.Name)
}
