package nstest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// CacheEnv names the directory that keeps downloads and builds between
// test runs (Debian archives, the kernel, opkg/apk, busybox). It lies
// outside the repository; the default is DefaultCache.
const CacheEnv = "OVPKG_TEST_CACHE"

// DefaultCache is the cache when $OVPKG_TEST_CACHE is unset.
const DefaultCache = "/var/cache/ovpkg-test"

// CacheDir returns the cache subdirectory name (created, root-only), for
// things worth keeping between runs. Callers that fill it take Lock on
// it first: tests in several packages run at once.
func CacheDir(t testing.TB, name string) string {
	t.Helper()
	root := os.Getenv(CacheEnv)
	if root == "" {
		root = DefaultCache
	}
	d := filepath.Join(root, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatalf("test cache %s: %v", d, err)
	}
	return d
}

// Lock takes an exclusive flock on dir/.lock (waiting for other test
// processes) and releases it when the test ends or when the returned
// function is called, whichever comes first.
func Lock(t testing.TB, dir string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("test cache lock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("test cache lock %s: %v", dir, err)
	}
	done := false
	unlock = func() {
		if !done {
			done = true
			f.Close()
		}
	}
	t.Cleanup(unlock)
	return unlock
}

// Cached returns dir/name, calling fill(tmp) to make it first when it is
// missing: fill writes into tmp (a path beside the final one), which is
// renamed into place only when fill succeeds, so an interrupted run never
// leaves a half-made entry. The cache lock is held meanwhile.
func Cached(t testing.TB, dir, name string, fill func(tmp string) error) string {
	t.Helper()
	final := filepath.Join(dir, name)
	if _, err := os.Lstat(final); err == nil {
		return final
	}
	unlock := Lock(t, dir)
	defer unlock()
	if _, err := os.Lstat(final); err == nil {
		return final
	}
	tmp := fmt.Sprintf("%s.tmp-%d", final, os.Getpid())
	os.RemoveAll(tmp) // a scratch path of ours in the cache, never a mount point
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("filling test cache %s: %v", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		t.Fatalf("test cache %s: %v", final, err)
	}
	return final
}
