package owrttest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// SrcEnv names the folder holding the package managers' sources
// (SOURCES.txt, build.sh and the tarballs); default: shared/pm-src in the
// module root's parent or an ancestor of it.
const SrcEnv = "OVPKG_PM_SRC"

// BuildTools are the programs build.sh needs; `make test-deps` installs
// them (and the -dev packages) so that no test installs anything.
var BuildTools = []string{"cc", "make", "cmake", "meson", "ninja", "pkg-config", "file", "gzip"}

// PM is the static opkg and apk built from the pm-src sources.
type PM struct {
	Dir  string // the cache entry
	Opkg string // Dir/bin/opkg-cl
	Apk  string // Dir/bin/apk
}

// SrcDir finds the pm-src folder, or "" when there is none.
func SrcDir() string {
	if d := os.Getenv(SrcEnv); d != "" {
		return d
	}
	for d := filepath.Dir(nstest.ModuleRoot()); ; d = filepath.Dir(d) {
		p := filepath.Join(d, "shared", "pm-src")
		if fi, err := os.Stat(filepath.Join(p, "SOURCES.txt")); err == nil && fi.Mode().IsRegular() {
			return p
		}
		if d == "/" || d == "." {
			return ""
		}
	}
}

// sourceSums reads the "sha256  file" lines of SOURCES.txt and checks
// every tarball against them.
func sourceSums(src string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(src, "SOURCES.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) == 2 && len(fl[0]) == 64 && strings.HasSuffix(fl[1], ".tar.gz") {
			if _, err := hex.DecodeString(fl[0]); err == nil {
				sums[fl[1]] = fl[0]
			}
		}
	}
	if len(sums) < 3 {
		return nil, fmt.Errorf("%s/SOURCES.txt lists %d sha256 sums, want libubox, opkg-lede and apk-tools", src, len(sums))
	}
	for name, want := range sums {
		got, err := fileSum(filepath.Join(src, name))
		if err != nil {
			return nil, err
		}
		if got != want {
			return nil, fmt.Errorf("%s/%s: sha256 %s, SOURCES.txt says %s", src, name, got, want)
		}
	}
	return sums, sc.Err()
}

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildPM returns the static opkg and apk, built with build.sh (NO_APT=1)
// into the test cache ("pm/<key>", the key a hash of SOURCES.txt's sums
// and of build.sh) the first time a test on this machine asks. Missing
// sources, missing build tools or a failed build skip the test (fail
// under CI).
func BuildPM(t testing.TB) PM {
	t.Helper()
	src := SrcDir()
	if src == "" {
		nstest.Skip(t, "no package manager sources: set $%s or put shared/pm-src beside the repository", SrcEnv)
	}
	sums, err := sourceSums(src)
	if err != nil {
		nstest.Skip(t, "package manager sources: %v", err)
	}
	bs, err := fileSum(filepath.Join(src, "build.sh"))
	if err != nil {
		nstest.Skip(t, "package manager sources: %v", err)
	}
	h := sha256.New()
	for _, n := range []string{"libubox", "opkg-lede", "apk-tools"} {
		found := false
		for f, s := range sums {
			if strings.HasPrefix(f, n+"-") {
				fmt.Fprintf(h, "%s %s\n", s, f)
				found = true
			}
		}
		if !found {
			nstest.Skip(t, "%s/SOURCES.txt has no sum for %s", src, n)
		}
	}
	fmt.Fprintf(h, "build.sh %s\n", bs)
	key := "pm-" + hex.EncodeToString(h.Sum(nil))[:16]
	cache := nstest.CacheDir(t, "pm")
	pm := PM{Dir: filepath.Join(cache, key)}
	pm.Opkg, pm.Apk = filepath.Join(pm.Dir, "bin", "opkg-cl"), filepath.Join(pm.Dir, "bin", "apk")
	ok := func() bool {
		for _, b := range []string{pm.Opkg, pm.Apk} {
			if fi, err := os.Stat(b); err != nil || !fi.Mode().IsRegular() {
				return false
			}
		}
		return true
	}
	if ok() {
		return pm
	}
	unlock := nstest.Lock(t, cache)
	defer unlock()
	if ok() {
		return pm
	}
	nstest.Need(t, BuildTools...)
	tmp := fmt.Sprintf("%s.tmp-%d", pm.Dir, os.Getpid())
	os.RemoveAll(tmp) // our scratch entry in the cache, never a mount point
	cmd := exec.Command("bash", filepath.Join(src, "build.sh"), src, tmp)
	cmd.Env = append(os.Environ(), "NO_APT=1", "STATIC=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("building the static opkg and apk from %s into %s (once per machine, about 3 minutes)", src, pm.Dir)
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		nstest.Skip(t, "building opkg and apk with %s/build.sh failed (%v; `make test-deps` installs its build packages):\n%s", src, err, tail(out.String(), 30))
	}
	if err := os.Rename(tmp, pm.Dir); err != nil {
		t.Fatalf("pm cache: %v", err)
	}
	if !ok() {
		t.Fatalf("build.sh succeeded but %s or %s is missing:\n%s", pm.Opkg, pm.Apk, out.String())
	}
	return pm
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
