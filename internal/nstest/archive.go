package nstest

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NeedArchive skips the test (fails under CI) unless apt can resolve pkgs
// from its lists and Debian's archive answers for the first file apt
// would fetch for them.
func NeedArchive(t testing.TB, pkgs ...string) {
	t.Helper()
	Need(t, "apt-get")
	out, err := exec.Command("apt-get", append([]string{"install", "--print-uris", "-qq", "-o", "Dir::Cache::Archives=/nonexistent/"}, pkgs...)...).Output()
	if err != nil {
		Skip(t, "apt-get cannot resolve %s (%v): run apt-get update", strings.Join(pkgs, " "), err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return // installed in the base already: nothing to fetch
	}
	uri := strings.Trim(f[0], "'")
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Head(uri)
	if err != nil {
		Skip(t, "the archive is unreachable (%s: %v)", uri, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		Skip(t, "the archive answers %s for %s", resp.Status, uri)
	}
}

// AptArchives returns a directory of the test cache for apt's archives
// (Dir::Cache::Archives, ovpkg's ARCHIVE_DIR with KEEP_ARCHIVES=yes) that
// belongs to this test alone until it ends: "apt-archives/<name>", locked
// with Lock for the test's duration. apt takes a lock of its own in the
// directory (Dir::Cache::Archives/lock) and fails at once, not waiting,
// when another apt holds it, so tests in several packages (or several
// test runs) sharing one directory failed now and then; now a second user
// of the same name waits for the first.
func AptArchives(t testing.TB, name string) string {
	t.Helper()
	dir := CacheDir(t, filepath.Join("apt-archives", name))
	// apt's _apt user downloads into partial/ through it.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	Lock(t, dir)
	return dir
}
