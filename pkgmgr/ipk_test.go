package pkgmgr

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/owrttest"
)

func readIpkFile(t *testing.T, p string) (*IpkInfo, error) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return ReadIpk(f)
}

// opkg-lede's own order (data.tar.gz before control.tar.gz), as the
// harness writes it, read from a stream.
func TestReadIpkStream(t *testing.T) {
	p := owrttest.BuildIpk(t, t.TempDir(), owrttest.Ipk{Name: "hello", Version: "2.1-3", Depends: "libfoo",
		Files: map[string]owrttest.File{"usr/bin/hello": owrttest.Program("hi"), "etc/hello.conf": {Data: "x"}, "usr/lib/l": {Link: "hello"}}})
	info, err := readIpkFile(t, p)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(info.Paths)
	if info.Pkg.Name != "hello" || info.Pkg.Version != "2.1-3" || info.Pkg.Depends != "libfoo" || info.Pkg.InstalledSize != 21 {
		t.Errorf("package %+v", info.Pkg)
	}
	if fmt.Sprint(info.Paths) != "[etc/hello.conf usr/bin/hello usr/lib/l]" || fmt.Sprint(info.Dirs) != "[etc usr usr/bin usr/lib]" {
		t.Errorf("paths %q dirs %q", info.Paths, info.Dirs)
	}
}

// Older packages are ar archives; read as a stream too, odd sizes padded.
func TestReadIpkAr(t *testing.T) {
	dir := t.TempDir()
	p := owrttest.BuildIpk(t, dir, owrttest.Ipk{Name: "old", Files: map[string]owrttest.File{"usr/bin/old": {Data: "odd"}}})
	var ctl, data []byte
	// Re-wrap the members of the tar.gz form into ar.
	ctl, data = ipkMembers(t, p)
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []struct {
		n string
		d []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", ctl}, {"data.tar.gz", data}} {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.n+"/", 0, 0, 0, "100644", len(m.d))
		b.Write(m.d)
		if len(m.d)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	info, err := ReadIpk(&b)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pkg.Name != "old" || fmt.Sprint(info.Paths) != "[usr/bin/old]" {
		t.Errorf("%+v", info)
	}
}

func ipkMembers(t *testing.T, p string) (ctl, data []byte) {
	t.Helper()
	f, _ := os.Open(p)
	defer f.Close()
	next, err := tarGzMembers(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		name, b, err := next()
		if err != nil {
			break
		}
		switch name {
		case "control.tar.gz":
			ctl = b
		case "data.tar.gz":
			data = b
		}
	}
	return ctl, data
}

func TestReadIpkRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"text", []byte("not an ipk at all"), "neither ar nor gzip"},
		{"bad ar", []byte("!<arch>\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "corrupt ar header"},
	} {
		if _, err := ReadIpk(bytes.NewReader(c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// A path climbing out of the root.
	p := dir + "/evil.ipk"
	writeIpk(t, p, "Package: evil\nVersion: 1\n", map[string]string{"./usr/../../etc/passwd": "x"})
	if _, err := readIpkFile(t, p); err == nil || !strings.Contains(err.Error(), "unsafe path") {
		t.Errorf("climbing path: %v", err)
	}
	// No control file.
	writeIpk(t, p, "", nil)
	if _, err := readIpkFile(t, p); err == nil {
		t.Error("ipk without control accepted")
	}
}

// Reading a package allocates about the same whatever its size: the
// data archive streams past, only its headers are kept. The 1.5 GiB one
// (zeros, a few MB compressed) is past the old reader's silent 1 GiB cap.
func TestReadIpkMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a 1.5 GiB (uncompressed) package")
	}
	dir := t.TempDir()
	small := owrttest.BuildIpk(t, dir, owrttest.Ipk{Name: "small", Files: map[string]owrttest.File{"usr/share/s": {Data: "s"}}})
	huge := owrttest.BuildIpk(t, dir, owrttest.Ipk{Name: "huge", Files: map[string]owrttest.File{
		"usr/share/huge/zeros": {Size: 3 << 29, Zeros: true}, "usr/share/huge/rand": {Size: 48 << 20}}})
	alloc := func(p string) (uint64, *IpkInfo) {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		info, err := readIpkFile(t, p)
		runtime.ReadMemStats(&b)
		if err != nil {
			t.Fatal(err)
		}
		return b.TotalAlloc - a.TotalAlloc, info
	}
	as, _ := alloc(small)
	ah, info := alloc(huge)
	if info.Pkg.InstalledSize != 3<<29+48<<20 || len(info.Paths) != 2 {
		t.Errorf("huge: %+v", info)
	}
	t.Logf("allocated reading: small %d B, huge (1.55 GiB of data) %d B", as, ah)
	if ah > as+2<<20 {
		t.Errorf("reading a 1.55 GiB package allocated %d bytes, a tiny one %d: the data is held, not streamed", ah, as)
	}
}

// tarGzMembers iterates over the regular files of a tar.gz stream,
// reading each whole (tests only use it on small archives).
func tarGzMembers(r io.Reader) (func() (string, []byte, error), error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	return func() (string, []byte, error) {
		for {
			h, err := tr.Next()
			if err != nil {
				return "", nil, err
			}
			if h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				return strings.TrimPrefix(h.Name, "./"), b, err
			}
		}
	}, nil
}
