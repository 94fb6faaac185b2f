package pkgmgr

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The test binary stands in for ovpkg as the PID namespace's init.
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		os.Exit(InitMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func open(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestParseStanzas(t *testing.T) {
	st, err := ParseStanzas("x", strings.NewReader("# comment\nA: 1\nB:  two \n more\n\tand more\n\n\n\nA: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Get("b") != "two\nmore\nand more" || st[1].Get("A") != "3" || st[1].Line != 9 {
		t.Fatalf("got %+v", st)
	}
	for _, bad := range []string{" leading continuation\n", "no colon here\n", "Bad Name: x\n"} {
		_, err := ParseStanzas("bad", strings.NewReader(bad))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != 1 {
			t.Errorf("%q: want SyntaxError at line 1, got %v", bad, err)
		}
	}
}

func TestParseDpkgStatus(t *testing.T) {
	pkgs, err := ParseDpkgStatus("dpkg-status", open(t, "dpkg-status"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range pkgs {
		keys = append(keys, p.Key()+"="+p.State)
	}
	want := []string{"adduser=installed", "halfway=half-configured", "libc6:amd64=installed", "libc6:i386=installed", "oldthing:amd64=config-files"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	a := pkgs[0]
	if a.InstalledSize != 686*1024 || a.Version != "3.134" || !reflect.DeepEqual(a.Conffiles, []string{"/etc/adduser.conf", "/etc/deluser.conf"}) {
		t.Errorf("adduser: %+v", a)
	}
	if !pkgs[1].Broken() || !pkgs[1].Essential || pkgs[4].Installed() || pkgs[4].Broken() {
		t.Errorf("states: %+v", pkgs)
	}
	ix := NewIndex(pkgs)
	if _, ok := ix.Lookup("libc6"); ok {
		t.Error("libc6 is ambiguous (two architectures) but bare name resolved")
	}
	if p, ok := ix.Lookup("adduser"); !ok || p.Name != "adduser" {
		t.Error("adduser not found by name")
	}
	// A real status file, when the machine has one, parses too.
	if f, err := os.Open("/var/lib/dpkg/status"); err == nil {
		defer f.Close()
		if _, err := ParseDpkgStatus(f.Name(), f); err != nil {
			t.Errorf("this machine's status: %v", err)
		}
	}
}

func TestParseStatusErrors(t *testing.T) {
	for _, in := range []string{
		"Package: a\nStatus: install ok\n",
		"Package: a\nInstalled-Size: lots\n",
		"Version: 1\n",
	} {
		if _, err := ParseDpkgStatus("s", strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestParseOpkgStatus(t *testing.T) {
	pkgs, err := ParseOpkgStatus("opkg-status", open(t, "opkg-status"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 3 {
		t.Fatalf("got %d packages", len(pkgs))
	}
	if pkgs[1].Name != "libc" || pkgs[1].InstalledSize != 290816 {
		t.Errorf("libc: %+v (opkg sizes are bytes)", pkgs[1])
	}
	if !pkgs[2].Broken() || pkgs[2].State != "unpacked" {
		t.Errorf("luci-app-foo should be unpacked: %+v", pkgs[2])
	}
}

func TestClassify(t *testing.T) {
	p := func(n, v string) Package {
		return Package{Name: n, Version: v, State: "installed", InstalledSize: 1024}
	}
	base := []Package{p("a", "1"), p("b", "1"), p("c", "1"), p("newbase", "1"), p("moved", "2")}
	snap := []Package{p("a", "1"), p("b", "1"), p("c", "1"), p("moved", "1")}
	merged := []Package{p("a", "1"), p("b", "2"), p("mine", "1"), p("moved", "1")} // c removed through the overlay
	got := map[string]Where{}
	for _, e := range Classify(merged, base, true, snap) {
		got[e.Name] = e.Where
	}
	want := map[string]Where{"a": InBase, "b": CardUpgrade, "mine": OnCard, "c": HiddenBase, "newbase": BaseChanged, "moved": BaseChanged}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for _, e := range Classify(base, base, false, nil) {
		if e.Where != InBase {
			t.Errorf("no card copy: %s is %s", e.Name, e.Where)
		}
	}
}

func TestParseDebContents(t *testing.T) {
	files, dirs, err := ParseDebContents(open(t, "dpkg-deb-contents.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wf := []string{"usr/bin/hello", "usr/bin/hi", "usr/bin/hello2", "usr/share/doc/hello/a file  with spaces", "boot/vmlinuz-test", "topfile"}
	wd := []string{"usr", "usr/bin", "boot"}
	if !reflect.DeepEqual(files, wf) || !reflect.DeepEqual(dirs, wd) {
		t.Fatalf("files %q dirs %q", files, dirs)
	}
	if _, _, err := ParseDebContents(strings.NewReader("garbage\n")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestCheckPaths(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc", "var", "boot", "opt"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	os.Symlink("/usr/lib", filepath.Join(root, "lib"))
	dirs := []string{"usr", "etc", "var"}
	ok := &Plan{Paths: map[string][]string{"p": {"usr/bin/x", "bin/y", "lib/z.so", "etc/p.conf"}},
		Dirs: map[string][]string{"p": {"usr", "bin", "boot", "opt"}}}
	if err := CheckPaths(root, dirs, ok); err != nil {
		t.Fatalf("good plan refused: %v", err)
	}
	for _, tc := range []struct{ paths, dirs []string }{
		{[]string{"boot/vmlinuz"}, nil},
		{[]string{"topfile"}, nil},
		{[]string{"opt/x/y"}, nil},
		{nil, []string{"srv"}},
	} {
		err := CheckPaths(root, dirs, &Plan{Paths: map[string][]string{"q": tc.paths}, Dirs: map[string][]string{"q": tc.dirs}})
		var oe *OutsideError
		if !errors.As(err, &oe) || oe.Package != "q" {
			t.Errorf("%v %v: want OutsideError, got %v", tc.paths, tc.dirs, err)
		}
	}
}

func TestDetect(t *testing.T) {
	root := t.TempDir()
	if _, err := Detect(root, "", nil); !errors.Is(err, ErrNoManager) {
		t.Fatalf("empty root: %v", err)
	}
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(s), 0o755)
	}
	write("bin/opkg", "")
	write("usr/lib/opkg/status", "")
	m, err := Detect(root, "", nil)
	if err != nil || m.Name() != "opkg" || m.StatusPath() != "usr/lib/opkg/status" {
		t.Fatalf("opkg root: %v %v", m, err)
	}
	if _, err := Detect(root, "apt", nil); !errors.Is(err, ErrNoManager) {
		t.Fatalf("--pm apt on an opkg root: %v", err)
	}
	if _, err := Detect(root, "yum", nil); err == nil || !strings.Contains(err.Error(), "unknown package manager") {
		t.Fatalf("--pm yum: %v", err)
	}
	write("usr/bin/dpkg", "")
	write("var/lib/dpkg/status", "")
	if _, err := Detect(root, "", nil); !errors.Is(err, ErrSeveralManagers) || !strings.Contains(err.Error(), "apt, opkg") || !strings.Contains(err.Error(), "--pm") {
		t.Fatalf("dpkg and opkg: want a clear ErrSeveralManagers, got %v", err)
	}
	if m, _ := Detect(root, "opkg", nil); m.Name() != "opkg" {
		t.Fatal("--pm opkg not honoured")
	}
	if m, _ := Detect(root, "apt", nil); m.Name() != "apt" {
		t.Fatal("--pm apt not honoured")
	}
}

func TestAptArgv(t *testing.T) {
	a := NewApt("/", nil)
	wd, _ := os.Getwd()
	cases := []struct {
		op   Op
		args []string
		yes  bool
		want string
	}{
		{OpInstall, []string{"hello", "./x.deb"}, true, "apt-get install -y hello " + wd + "/x.deb"},
		{OpInstall, []string{"hello"}, false, "apt-get install hello"},
		{OpRemove, []string{"hello"}, true, "dpkg --remove hello"},
		{OpPurge, []string{"hello"}, false, "dpkg --purge hello"},
		{OpUpdate, nil, true, "apt-get update"},
		{OpUpgrade, nil, true, "apt-get upgrade -y"},
		{OpUpgrade, []string{"hello"}, true, "apt-get install --only-upgrade -y hello"},
		{OpConfigure, nil, true, "dpkg --configure -a"},
		{OpRaw, []string{"-s", "dist-upgrade"}, false, "apt-get -s dist-upgrade"},
	}
	for _, c := range cases {
		got, err := a.Argv(c.op, c.args, ArgvOptions{Yes: c.yes})
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%s %v: got %q (%v), want %q", c.op, c.args, strings.Join(got, " "), err, c.want)
		}
	}
	for _, bad := range [][]string{{"-o", "x"}, {""}, nil} {
		if _, err := a.Argv(OpInstall, bad, ArgvOptions{}); err == nil {
			t.Errorf("install %q accepted", bad)
		}
	}
	if _, err := a.Argv(OpUpdate, []string{"x"}, ArgvOptions{}); err == nil {
		t.Error("update with a package accepted")
	}
}

func TestOpkgArgv(t *testing.T) {
	o := NewOpkg("/", nil)
	wd, _ := os.Getwd()
	cases := []struct {
		op   Op
		args []string
		want string
	}{
		{OpInstall, []string{"supertux", "./a.ipk"}, "opkg --force-space install supertux " + wd + "/a.ipk"},
		{OpRemove, []string{"supertux"}, "opkg remove supertux"},
		{OpPurge, []string{"supertux"}, "opkg remove --force-remove supertux"},
		{OpUpdate, nil, "opkg update"},
		{OpUpgrade, []string{"luci"}, "opkg --force-space upgrade luci"},
		{OpConfigure, nil, "opkg configure"},
		{OpRaw, []string{"list-upgradable"}, "opkg list-upgradable"},
	}
	for _, c := range cases {
		got, err := o.Argv(c.op, c.args, ArgvOptions{Yes: true})
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%s %v: got %q (%v), want %q", c.op, c.args, strings.Join(got, " "), err, c.want)
		}
	}
}

// fakeExec answers helper commands from a table keyed by argv prefix.
func fakeExec(t *testing.T, answers map[string]string, calls *[]string) Exec {
	return func(_ context.Context, argv []string) ([]byte, []byte, error) {
		line := strings.Join(argv, " ")
		*calls = append(*calls, line)
		for k, v := range answers {
			if strings.HasPrefix(line, k) {
				if strings.HasPrefix(v, "ERR:") {
					return nil, nil, &CommandError{Argv: argv, Code: 100, Stderr: v[4:]}
				}
				return []byte(v), nil, nil
			}
		}
		t.Fatalf("unexpected command %q", line)
		return nil, nil, nil
	}
}

func TestInspectDebCorrupt(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.deb")
	os.WriteFile(bad, []byte("garbage\n"), 0o644)
	var calls []string
	x := fakeExec(t, map[string]string{"dpkg-deb --ctrl-tarfile": "ERR:dpkg-deb: error: '" + bad + "' is not a Debian format archive\n"}, &calls)
	_, err := InspectDeb(context.Background(), x, bad)
	if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "not a Debian format archive") {
		t.Fatalf("got %v", err)
	}
}

func TestOpkgPlanInstall(t *testing.T) {
	dir := t.TempDir()
	ipk := filepath.Join(dir, "local_1.0_all.ipk")
	writeIpk(t, ipk, "Package: local\nVersion: 1.0\nArchitecture: all\nInstalled-Size: 4096\n", map[string]string{"./usr/bin/local": "x", "./etc/local.conf": "y"})
	opkgTestRoot(t, dir)
	noaction, _ := os.ReadFile("testdata/opkg-noaction.txt")
	var calls []string
	x := fakeExec(t, map[string]string{
		"opkg --noaction install": string(noaction),
	}, &calls)
	plan, err := NewOpkg(dir, x).Plan(context.Background(), Request{Op: OpInstall, Args: []string{ipk, "luci-app-foo"}})
	if err != nil {
		t.Fatal(err)
	}
	// Sizes from the package lists (opkg info prints none).
	if len(plan.Install) != 3 || plan.InstallSize != 4096+2000+3000 || plan.DownloadSize != 700+800 {
		t.Fatalf("plan %+v", plan)
	}
	got := append([]string(nil), plan.Paths["local"]...)
	sort.Strings(got)
	if !reflect.DeepEqual(got, []string{"etc/local.conf", "usr/bin/local"}) {
		t.Errorf("ipk paths %q", got)
	}
	os.WriteFile(ipk, []byte("not an ipk"), 0o644)
	if _, err := NewOpkg(dir, x).Plan(context.Background(), Request{Op: OpInstall, Args: []string{ipk}}); !errors.Is(err, ErrBadArchive) {
		t.Errorf("corrupt ipk: %v", err)
	}
}

func writeIpk(t *testing.T, path, control string, files map[string]string) {
	t.Helper()
	tgz := func(m map[string]string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		tw := tar.NewWriter(zw)
		for n, d := range m {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(d)), Typeflag: tar.TypeReg})
			tw.Write([]byte(d))
		}
		tw.Close()
		zw.Close()
		return b.Bytes()
	}
	outer := tgz(map[string]string{
		"./debian-binary":  "2.0\n",
		"./control.tar.gz": string(tgz(map[string]string{"./control": control})),
		"./data.tar.gz":    string(tgz(files)),
	})
	if err := os.WriteFile(path, outer, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpkgFiles(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib/opkg/info"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/opkg/status"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "usr/lib/opkg/info/foo.list"), []byte("/usr/bin/foo\t0755\n/etc/foo.conf\n"), 0o644)
	got, err := NewOpkg(root, nil).Files("foo")
	if err != nil || !reflect.DeepEqual(got, []string{"/usr/bin/foo", "/etc/foo.conf"}) {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := NewOpkg(root, nil).Files("bar"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("missing: %v", err)
	}
}

func TestAptFiles(t *testing.T) {
	root := t.TempDir()
	info := filepath.Join(root, "var/lib/dpkg/info")
	os.MkdirAll(info, 0o755)
	os.WriteFile(filepath.Join(info, "libx:amd64.list"), []byte("/.\n/usr\n/usr/lib/libx.so.1\n"), 0o644)
	got, err := NewApt(root, nil).Files("libx")
	if err != nil || len(got) != 3 {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := NewApt(root, nil).Files("../../etc/passwd"); err == nil {
		t.Fatal("path as package name accepted")
	}
}

func TestCheckSpace(t *testing.T) {
	dir := t.TempDir()
	sp, err := StatSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSpace(dir, 1024, dir, 1024, "1 package"); err != nil && sp.Free > 4<<20 {
		t.Fatalf("small plan: %v", err)
	}
	err = CheckSpace(dir, sp.Total+1, "", 0, "1 package")
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "not enough space on the card") {
		t.Fatalf("big plan: %v", err)
	}
	// Archives elsewhere: their own file system's free space counts.
	err = CheckSpace(dir, 0, "/proc", 4096, "1 package")
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "/proc") {
		t.Fatalf("download to a full file system: %v", err)
	}
}

func TestNoSpaceWatch(t *testing.T) {
	var out bytes.Buffer
	w := &noSpaceWatch{w: &out}
	for _, chunk := range []string{"dpkg: error processing archive x (--unpack):\n cannot copy extracted data for './usr/x' to '/usr/x.dpkg-new': failed to write (No spa", "ce left on device)\n"} {
		w.Write([]byte(chunk))
	}
	if !w.Seen() || !strings.Contains(out.String(), "No space left") {
		t.Fatal("message split across writes not seen")
	}
}

func TestPolicyLog(t *testing.T) {
	got := ParsePolicyLog(strings.NewReader("food start\nfood start\nbard restart 2\n\n"))
	if !reflect.DeepEqual(got, []string{"food start", "bard restart"}) {
		t.Fatalf("%q", got)
	}
}

func TestRemovalClosure(t *testing.T) {
	p := func(n, deps string, provides ...string) Package {
		return Package{Name: n, Version: "1", State: "installed", Depends: deps, Provides: provides}
	}
	inst := []Package{
		p("lib", ""), p("app", "lib (>= 1)"), p("plugin", "app"), p("either", "lib | other"), p("other", ""),
		p("mta-a", "", "mail-transport-agent"), p("mta-b", "", "mail-transport-agent"), p("mailer", "mail-transport-agent"),
		p("pre", "lib:any"), {Name: "old", State: "config-files", Depends: "lib"},
	}
	names := func(ps []Package) string {
		var s []string
		for _, x := range ps {
			s = append(s, x.Name)
		}
		return strings.Join(s, " ")
	}
	got, err := RemovalClosure(inst, []string{"lib"})
	if err != nil || names(got) != "lib app plugin pre" {
		t.Fatalf("lib: %q %v", names(got), err)
	}
	if got, _ := RemovalClosure(inst, []string{"mta-a"}); names(got) != "mta-a" {
		t.Fatalf("virtual still provided: %q", names(got))
	}
	if got, _ := RemovalClosure(inst, []string{"mta-a", "mta-b"}); names(got) != "mta-a mta-b mailer" {
		t.Fatalf("virtual gone: %q", names(got))
	}
	if _, err := RemovalClosure(inst, []string{"old"}); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("config-files only: %v", err)
	}
}

func TestDpkgJournal(t *testing.T) {
	root := t.TempDir()
	db := filepath.Join(root, "var/lib/dpkg")
	os.MkdirAll(filepath.Join(db, "updates"), 0o755)
	os.WriteFile(filepath.Join(db, "status"), []byte("Package: a\nStatus: install ok unpacked\nVersion: 1\n\nPackage: b\nStatus: install ok installed\nVersion: 1\n"), 0o644)
	os.WriteFile(filepath.Join(db, "updates/0000"), []byte("Package: a\nStatus: install ok half-configured\nVersion: 1\n"), 0o644)
	os.WriteFile(filepath.Join(db, "updates/0001"), []byte("Package: b\nStatus: purge ok not-installed\n"), 0o644)
	os.WriteFile(filepath.Join(db, "updates/tmp.i"), []byte("garbage"), 0o644)
	pkgs, err := Installed(NewApt(root, nil))
	if err != nil || len(pkgs) != 1 || pkgs[0].Name != "a" || pkgs[0].State != "half-configured" {
		t.Fatalf("%+v %v", pkgs, err)
	}
}

// opkg removes dependants with what they depend on, as apt/dpkg does:
// removing libc takes busybox (installed, depends on libc) along.
func TestOpkgPlanRemoveTakesDependants(t *testing.T) {
	root := t.TempDir()
	o := NewOpkg(root, nil)
	st := filepath.Join(root, o.StatusPath())
	if err := os.MkdirAll(filepath.Dir(st), 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile("testdata/opkg-status")
	os.WriteFile(st, data, 0o644)
	plan, err := o.Plan(context.Background(), Request{Op: OpRemove, Args: []string{"libc"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plan.Remove {
		names = append(names, p.Name)
	}
	if len(names) < 2 || names[0] != "libc" || !strings.Contains(strings.Join(names, " "), "busybox") {
		t.Errorf("PlanRemove(libc) = %q, want libc and its dependant busybox", names)
	}
	if _, err := o.Plan(context.Background(), Request{Op: OpRemove, Args: []string{"nosuch"}}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("unknown package: %v", err)
	}
}

// opkgTestRoot gives a scratch root what the opkg adapter checks for
// (gzip on PATH, /var/lock) and a package list (gzip'd, as opkg-lede
// keeps them) with the sizes of the packages in testdata/opkg-noaction.txt.
func opkgTestRoot(t *testing.T, root string) {
	t.Helper()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "var/lock"), 0o755)
	os.WriteFile(filepath.Join(root, "bin/gzip"), []byte("#!/bin/sh\n"), 0o755)
	lists := filepath.Join(root, "var/opkg-lists")
	os.MkdirAll(lists, 0o755)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/opkg.conf"), []byte("dest root /\nlists_dir ext /var/opkg-lists\n"), 0o644)
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte("Package: luci-app-foo\nVersion: git-23.051.66410-a505bb1\nInstalled-Size: 2000\nArchitecture: all\nSize: 700\nDescription: x\n y\n\n" +
		"Package: luci-lib-bar\nVersion: 1.0-1\nInstalled-Size: 3000\nArchitecture: all\nSize: 800\n\n" +
		"Package: luci-base\nVersion: 23.1-2\nInstalled-Size: 5000\nSize: 900\n\n" +
		"Package: luci-base\nVersion: 23.0-1\nInstalled-Size: 4000\n"))
	zw.Close()
	os.WriteFile(filepath.Join(lists, "openwrt_luci"), b.Bytes(), 0o644)
}
