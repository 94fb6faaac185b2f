package pkgmgr

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/internal/owrttest"
	"github.com/ovpkg/ovpkg/pkgmgr/apktest"
)

// apkBin is the real apk-tools 3, built once from ../shared/pm-src into
// the test cache (owrttest.BuildPM).
func apkBin(t testing.TB) string {
	t.Helper()
	return owrttest.BuildPM(t).Apk
}

func TestReadApkV3(t *testing.T) {
	apk := apkBin(t)
	dir := t.TempDir()
	spec := apktest.Spec{
		Name: "multi", Version: "2.1-r3", Arch: "x86_64",
		Depends:  []string{"libfoo>=1.0", "!bar", "so:libc.so.6"},
		Provides: []string{"cmd:multi=2.1-r3", "virt"},
		Files: map[string]apktest.File{
			"usr/bin/multi":      apktest.Program("multi"),
			"usr/bin/alias":      {Link: "multi"},
			"etc/multi.conf":     {Data: "x=1\n"},
			"topfile":            {Data: "top"},
			"usr/share/empty":    {Dir: true},
			"usr/lib/deep/a/b/c": {Data: "deep"},
		},
		Scripts: map[string]string{"post-install": "echo hi"},
	}
	for _, comp := range []string{"", "none", "deflate"} {
		t.Run("compression="+comp, func(t *testing.T) {
			s := spec
			s.Compression = comp
			d := filepath.Join(dir, "c"+comp)
			os.MkdirAll(d, 0o755)
			p := apktest.Build(t, apk, d, nil, s)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, err := ReadApk(f)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != 3 || info.Pkg.Name != "multi" || info.Pkg.Version != "2.1-r3" || info.Pkg.Arch != "x86_64" {
				t.Fatalf("package: %+v", info)
			}
			if info.Pkg.Depends != "libfoo>=1.0, so:libc.so.6" {
				t.Errorf("depends %q", info.Pkg.Depends)
			}
			if !reflect.DeepEqual(info.Pkg.Provides, []string{"cmd:multi", "virt"}) {
				t.Errorf("provides %q", info.Pkg.Provides)
			}
			// apk's own count of the installed size (symbolic links count 0).
			if info.Pkg.InstalledSize != int64(len(apktest.Program("multi").Data)+len("x=1\n")+len("top")+len("deep")) {
				t.Errorf("installed size %d", info.Pkg.InstalledSize)
			}
			sort.Strings(info.Paths)
			sort.Strings(info.Dirs)
			wantPaths := []string{"etc/multi.conf", "topfile", "usr/bin/alias", "usr/bin/multi", "usr/lib/deep/a/b/c"}
			wantDirs := []string{"etc", "usr", "usr/bin", "usr/lib", "usr/lib/deep", "usr/lib/deep/a", "usr/lib/deep/a/b", "usr/share", "usr/share/empty"}
			if !reflect.DeepEqual(info.Paths, wantPaths) || !reflect.DeepEqual(info.Dirs, wantDirs) {
				t.Fatalf("paths %q\ndirs %q", info.Paths, info.Dirs)
			}
		})
	}
	t.Run("zstd", func(t *testing.T) {
		s := spec
		s.Compression = "zstd"
		d := filepath.Join(dir, "zstd")
		os.MkdirAll(d, 0o755)
		p, err := apktest.BuildErr(apk, d, nil, s)
		if err != nil {
			t.Skipf("this apk cannot write zstd: %v", err)
		}
		f, _ := os.Open(p)
		defer f.Close()
		if _, err := ReadApk(f); err == nil || !strings.Contains(err.Error(), "zstd") {
			t.Fatalf("zstd package: want a clear refusal, got %v", err)
		}
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestReadApkStreams: of a 48 MiB package only the metadata is read, and
// memory stays small.
func TestReadApkStreams(t *testing.T) {
	apk := apkBin(t)
	dir := t.TempDir()
	p := apktest.Build(t, apk, dir, nil, apktest.Spec{Name: "big", Files: map[string]apktest.File{
		"usr/share/big/blob": {Size: 48 << 20}, "usr/bin/big": apktest.Program("big"),
	}})
	fi, _ := os.Stat(p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cr := &countingReader{r: f}
	info, err := ReadApk(cr)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pkg.InstalledSize < 48<<20 || len(info.Paths) != 2 {
		t.Fatalf("%+v", info)
	}
	if cr.n > 1<<20 {
		t.Errorf("read %d bytes of a %d-byte package: the data blocks should never be read", cr.n, fi.Size())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("allocated %d bytes reading a %d-byte package", alloc, fi.Size())
	}
}

func TestReadApkBad(t *testing.T) {
	apk := apkBin(t)
	p := apktest.Build(t, apk, t.TempDir(), nil, apktest.Spec{Name: "ok", Compression: "none", Files: map[string]apktest.File{"usr/bin/ok": apktest.Program("ok")}})
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not a package at all"),
		"truncated": good[:40],
		"index":     append([]byte("ADB.indx"), good[8:]...),
	}
	// Every single-byte corruption of the metadata: an error or a
	// package, never a panic or a hang.
	for i := 8; i < 200 && i < len(good); i++ {
		b := bytes.Clone(good)
		b[i] ^= 0xff
		cases["flip"+string(rune('a'+i%26))+string(rune('0'+i/26))] = b
	}
	for name, b := range cases {
		_, err := ReadApk(bytes.NewReader(b))
		if err == nil && (name == "empty" || name == "garbage" || name == "truncated" || name == "index") {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzReadApk(f *testing.F) {
	f.Add([]byte("ADB.pckg\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("ADBd"))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadApk(bytes.NewReader(b))
	})
}

func TestParseApkInstalled(t *testing.T) {
	db := `C:Q1abc=
P:hello
V:1.0-r1
A:noarch
S:567
I:21
T:hi: a greeting
D:libfoo>=1.0 so:libc.so.6 !conflict
p:cmd:hello=1.0-r1
f:S
F:usr
F:usr/bin
R:hello
a:0:0:755
Z:Q1v96=

C:Q1def=
P:libfoo
V:1.0-r1
A:x86_64
I:4
f:s
F:usr/lib
R:libfoo.so.1
`
	pkgs, err := ParseApkInstalled("installed", strings.NewReader(db))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 {
		t.Fatalf("%+v", pkgs)
	}
	h, l := pkgs[0], pkgs[1]
	if h.Name != "hello" || h.Version != "1.0-r1" || h.InstalledSize != 21 || h.State != "installed" || h.Depends != "libfoo>=1.0, so:libc.so.6" ||
		!reflect.DeepEqual(h.Provides, []string{"cmd:hello"}) || h.Broken() {
		t.Errorf("hello: %+v", h)
	}
	if l.Key() != "libfoo:x86_64" || l.State != "broken-script" || !l.Broken() {
		t.Errorf("libfoo: %+v", l)
	}
	if _, err := ParseApkInstalled("x", strings.NewReader("P:a\nnonsense\n")); err == nil {
		t.Error("a line that is not K:value parsed")
	}
	if _, err := ParseApkInstalled("x", strings.NewReader("V:1\n\n")); err == nil {
		t.Error("a paragraph without P: parsed")
	}
}

func TestApkArgv(t *testing.T) {
	a := NewApk("/", nil)
	wd, _ := os.Getwd()
	cases := []struct {
		op   Op
		args []string
		yes  bool
		want string
	}{
		{OpInstall, []string{"hello", "./x.apk"}, true, "apk --no-interactive add hello " + wd + "/x.apk"},
		{OpInstall, []string{"hello"}, false, "apk add hello"},
		{OpRemove, []string{"hello", "libfoo"}, true, "apk --no-interactive del hello libfoo"},
		{OpPurge, []string{"hello"}, false, "apk --purge del hello"},
		{OpUpdate, nil, false, "apk update"},
		{OpUpgrade, nil, true, "apk --no-interactive upgrade"},
		{OpUpgrade, []string{"hello"}, false, "apk upgrade hello"},
		{OpConfigure, nil, false, "apk fix"},
		{OpRaw, []string{"--allow-untrusted", "add", "x"}, true, "apk --allow-untrusted add x"},
	}
	for _, c := range cases {
		got, err := a.Argv(c.op, c.args, ArgvOptions{Yes: c.yes})
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%s %v: got %q, %v; want %q", c.op, c.args, got, err, c.want)
		}
	}
	for _, bad := range [][]string{{"--allow-untrusted"}, {""}} {
		if _, err := a.Argv(OpInstall, bad, ArgvOptions{}); err == nil {
			t.Errorf("install %q accepted", bad)
		}
	}
	if _, err := a.Argv(OpInstall, nil, ArgvOptions{}); err == nil {
		t.Error("install with nothing accepted")
	}
}

func TestParseApkChanges(t *testing.T) {
	out := `(1/5) Installing libfoo (1.0-r1)
( 2/12) Upgrading hello@edge (1.0-r1 -> 1.1-r1)
(3/5) Purging old (0.9)
(4/5) Downgrading x (2 -> 1)
(5/5) [APK unavailable, skipped] Reinstalling y (3)
  Executing hello-1.1-r1.post-upgrade
OK: 25 B in 2 packages
`
	got, err := ParseApkChanges(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []ApkChange{
		{"Installing", "libfoo", "", "1.0-r1"},
		{"Upgrading", "hello", "1.0-r1", "1.1-r1"},
		{"Purging", "old", "", "0.9"},
		{"Downgrading", "x", "2", "1"},
		{"Reinstalling", "y", "", "3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
}

// apkRoot is a root directory holding the static apk, a repository under
// /srv/repo signed with a trusted key, and an initialised database. The
// adapter runs apk chrooted into it, as ovpkg does with --root.
type apkRoot struct {
	apk, root string
	key       apktest.Key
	repo      apktest.Repo
	m         *Apk
}

func newApkRoot(t *testing.T, specs ...apktest.Spec) *apkRoot {
	t.Helper()
	nstest.RequireRoot(t)
	r := &apkRoot{apk: apkBin(t), root: t.TempDir()}
	r.key = apktest.NewKey(t, t.TempDir(), "ovpkg-test")
	r.repo = apktest.NewRepo(t, r.apk, filepath.Join(r.root, "srv/repo"), &r.key, specs...)
	apktest.InitRoot(t, r.apk, r.root, []string{"/srv/repo/packages.adb"}, r.key)
	b, err := os.ReadFile(r.apk)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(r.root, "usr/bin"), 0o755)
	if err := os.WriteFile(filepath.Join(r.root, "usr/bin/apk"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := Detect(r.root, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.m = m.(*Apk)
	return r
}

// apk runs the root's apk chrooted into it.
func (r *apkRoot) run(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := HostExec(r.root)(context.Background(), append([]string{"apk"}, args...))
	if err != nil {
		t.Fatalf("apk %v: %v", args, err)
	}
	return string(out)
}

var (
	specLibfoo = apktest.Spec{Name: "libfoo", Files: map[string]apktest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}}
	specHello  = apktest.Spec{Name: "hello", Depends: []string{"libfoo"}, Files: map[string]apktest.File{"usr/bin/hello": apktest.Program("hello 1.0")}}
	specTool   = apktest.Spec{Name: "tool", Depends: []string{"hello"}, Files: map[string]apktest.File{"usr/bin/tool": apktest.Program("tool")}}
)

func TestApkPlanInstall(t *testing.T) {
	r := newApkRoot(t, specLibfoo, specHello, specTool)
	ctx := context.Background()
	plan, err := r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{"tool"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plan.Install {
		names = append(names, p.Name+"="+p.Version)
		if p.InstalledSize == 0 || p.Arch != "noarch" || p.Old != "" {
			t.Errorf("no size or arch from apk query: %+v", p)
		}
	}
	if strings.Join(names, " ") != "libfoo=1.0-r1 hello=1.0-r1 tool=1.0-r1" {
		t.Fatalf("closure: %v", names)
	}
	if plan.DownloadSize != 0 {
		t.Errorf("a local repository needs no download, plan says %d", plan.DownloadSize)
	}
	if plan.InstallSize != int64(len("lib")+len(apktest.Program("hello 1.0").Data)+len(apktest.Program("tool").Data)) {
		t.Errorf("install size %d", plan.InstallSize)
	}
	if len(plan.Paths) != 0 {
		t.Errorf("archive packages listed (the read-only base protects instead): %v", plan.Paths)
	}
	// The job is apk add, told not to ask; its output is progress.
	job, err := r.m.Job(Request{Op: OpInstall, Args: []string{"tool"}}, plan)
	if err != nil || strings.Join(job.Argv, " ") != "apk --no-interactive add tool" {
		t.Fatalf("job %+v %v", job, err)
	}
	if ev := job.Parse(StreamStdout, "( 2/4) Installing hello (1.0-r1)"); len(ev) != 1 || ev[0].Phase != PhaseInstall || ev[0].Percent != 25 || ev[0].Text != "Installing hello (1.0-r1)" {
		t.Errorf("progress %+v", ev)
	}
	if _, err := r.m.Job(Request{Op: OpInstall, Args: []string{"tool"}}, nil); !errors.Is(err, ErrNeedPlan) {
		t.Errorf("job without a plan: %v", err)
	}
	// Unknown names are ErrUnknownPackage.
	if _, err := r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{"nosuch"}}); !errors.Is(err, ErrUnknownPackage) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown package: %v", err)
	}
	// Nothing was installed by planning.
	if pkgs, _ := Installed(r.m); len(pkgs) != 0 {
		t.Errorf("planning installed %v", pkgs)
	}
}

func TestApkPlanLocalFileAndTrust(t *testing.T) {
	r := newApkRoot(t, specLibfoo)
	ctx := context.Background()
	dir := filepath.Join(r.root, "tmp")
	os.MkdirAll(dir, 0o755)
	signed := apktest.Build(t, r.apk, dir, &r.key, apktest.Spec{Name: "local", Depends: []string{"libfoo"},
		Files: map[string]apktest.File{"usr/bin/local": apktest.Program("local")}})
	// Local files are named as ovpkg sees them; apk, chrooted, gets them
	// as it sees them.
	inRoot := func(p string) string { return p }
	if _, err := r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{filepath.Join(t.TempDir(), "x.apk")}}); err == nil {
		t.Error("a file outside the root: no error")
	}
	plan, err := r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{inRoot(signed)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Install) != 2 || plan.Install[1].Name != "local" || !reflect.DeepEqual(plan.Paths["local"], []string{"usr/bin/local"}) {
		t.Fatalf("plan %+v", plan)
	}
	unsignedDir := filepath.Join(dir, "unsigned")
	os.MkdirAll(unsignedDir, 0o755)
	unsigned := apktest.Build(t, r.apk, unsignedDir, nil, apktest.Spec{Name: "local", Files: map[string]apktest.File{"usr/bin/local": apktest.Program("local")}})
	_, err = r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{inRoot(unsigned)}})
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "allow-untrusted") || !strings.Contains(err.Error(), "local") {
		t.Fatalf("unsigned package: want ErrUntrusted naming the package and the switch, got %v", err)
	}
	// The root's own apk configuration allows unsigned packages.
	if err := os.WriteFile(filepath.Join(r.root, "etc/apk/config"), []byte("allow-untrusted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{inRoot(unsigned)}}); err != nil {
		t.Fatalf("unsigned package where etc/apk/config allows it: %v", err)
	}
	// A corrupt file is ErrBadArchive, before apk is asked.
	bad := filepath.Join(dir, "bad.apk")
	os.WriteFile(bad, []byte("ADBdgarbage"), 0o644)
	if _, err := r.m.Plan(ctx, Request{Op: OpInstall, Args: []string{inRoot(bad)}}); !errors.Is(err, ErrBadArchive) {
		t.Fatalf("corrupt file: %v", err)
	}
}

func TestApkInstalledFilesRemoveUpgrade(t *testing.T) {
	r := newApkRoot(t, specLibfoo, specHello, specTool, apktest.Spec{Name: "other", Files: map[string]apktest.File{"usr/bin/other": apktest.Program("o")}})
	ctx := context.Background()
	r.run(t, "add", "tool", "other")
	pkgs, err := Installed(r.m)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, p.Name)
		if p.State != "installed" || p.Version != "1.0-r1" {
			t.Errorf("%+v", p)
		}
	}
	if strings.Join(names, " ") != "hello libfoo other tool" {
		t.Fatalf("installed: %v", names)
	}
	files, err := r.m.Files("hello")
	if err != nil || !reflect.DeepEqual(files, []string{"/usr/bin/hello"}) {
		t.Fatalf("files: %q %v", files, err)
	}
	if _, err := r.m.Files("nosuch"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("files of a missing package: %v", err)
	}
	// Removing libfoo takes its dependants (and nothing else): named first.
	plan, err := r.m.Plan(ctx, Request{Op: OpRemove, Args: []string{"libfoo"}})
	if err != nil {
		t.Fatal(err)
	}
	var rm []string
	for _, p := range plan.Remove {
		rm = append(rm, p.Name)
	}
	if len(rm) != 3 || rm[0] != "libfoo" || !strings.Contains(strings.Join(rm, " "), "tool") {
		t.Fatalf("remove libfoo: %v", rm)
	}
	// Removing tool takes the dependencies nothing else needs.
	plan, err = r.m.Plan(ctx, Request{Op: OpRemove, Args: []string{"tool"}})
	if err != nil {
		t.Fatal(err)
	}
	rm = nil
	for _, p := range plan.Remove {
		rm = append(rm, p.Name)
	}
	sort.Strings(rm[1:])
	if strings.Join(rm, " ") != "tool hello libfoo" {
		t.Fatalf("remove tool: %v", rm)
	}
	if _, err := r.m.Plan(ctx, Request{Op: OpRemove, Args: []string{"nosuch"}}); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("remove a missing package: %v", err)
	}
	// An upgrade in the repository.
	r.repo.Add(t, r.apk, &r.key, apktest.Spec{Name: "hello", Version: "1.1-r1", Depends: []string{"libfoo"},
		Files: map[string]apktest.File{"usr/bin/hello": apktest.Program("hello 1.1"), "usr/share/hello/new": {Data: "n"}}})
	plan, err = r.m.Plan(ctx, Request{Op: OpUpgrade})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Install) != 1 || plan.Install[0].Name != "hello" || plan.Install[0].Version != "1.1-r1" || plan.Install[0].Old != "1.0-r1" ||
		plan.InstallSize != int64(len(apktest.Program("hello 1.1").Data)+len("n")-len(apktest.Program("hello 1.0").Data)) {
		t.Fatalf("upgrade plan %+v", plan)
	}
}

// TestReadApkV2 reads an Alpine-style v2 package, and checks against the
// real apk (which still installs v2 packages) that it is one.
func TestReadApkV2(t *testing.T) {
	dir := t.TempDir()
	spec := apktest.Spec{Name: "old", Version: "0.9-r0", Depends: []string{"so:libc.musl-x86_64.so.1", "libfoo>1"}, Provides: []string{"cmd:old=0.9-r0"},
		Files: map[string]apktest.File{"usr": {Dir: true}, "usr/bin": {Dir: true}, "usr/bin/old": apktest.Program("old"), "usr/bin/o": {Link: "old"}}}
	p := apktest.BuildV2(t, dir, spec)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ReadApk(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(info.Paths)
	if info.Format != 2 || info.Pkg.Name != "old" || info.Pkg.Version != "0.9-r0" || info.Pkg.Depends != "so:libc.musl-x86_64.so.1, libfoo>1" ||
		!reflect.DeepEqual(info.Pkg.Provides, []string{"cmd:old"}) || !reflect.DeepEqual(info.Paths, []string{"usr/bin/o", "usr/bin/old"}) ||
		!reflect.DeepEqual(info.Dirs, []string{"usr", "usr/bin"}) || info.Pkg.InstalledSize != int64(len(apktest.Program("old").Data)) {
		t.Fatalf("%+v", info)
	}
	// The real apk takes it for a package and installs the same files.
	apk := apkBin(t)
	root := filepath.Join(dir, "root")
	apktest.InitRoot(t, apk, root, nil)
	if out, err := apktest.Command(apk, "--root", root, "--allow-untrusted", "--no-scripts", "add", "--force-non-repository", p).CombinedOutput(); err != nil {
		// The dependencies are not there: apk must say so, not that the
		// file is no package.
		if !strings.Contains(string(out), "libfoo") {
			t.Fatalf("apk on the v2 package: %v\n%s", err, out)
		}
		spec.Depends = nil
		p = apktest.BuildV2(t, dir, spec)
		if out, err := apktest.Command(apk, "--root", root, "--allow-untrusted", "--no-scripts", "add", p).CombinedOutput(); err != nil {
			t.Fatalf("apk on the v2 package: %v\n%s", err, out)
		}
	}
	m := NewApk(root, nil)
	files, err := m.Files("old")
	if err != nil || !reflect.DeepEqual(files, []string{"/usr/bin/o", "/usr/bin/old"}) {
		t.Fatalf("apk installed %q (%v)", files, err)
	}
	// A path that climbs out is refused.
	spec.Files = map[string]apktest.File{"usr/../boot/x": {Data: "x"}}
	spec.Name = "evil"
	f, _ = os.Open(apktest.BuildV2(t, dir, spec))
	defer f.Close()
	if _, err := ReadApk(f); err == nil || !strings.Contains(err.Error(), "unsafe") {
		t.Fatalf("path with ..: %v", err)
	}
}
