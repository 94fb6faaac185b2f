package pkgmgr

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/pkgmgr/debtest"
)

// Real `apt-get --print-uris -V install supertux` output (Debian 12):
// fonts-roboto-unhinted and libopenal* carry epochs, and apt's archive
// names carry them as %3a; nothing else builds those names.
func TestParseAptSummarySupertux(t *testing.T) {
	plan, err := ParseAptSummary(open(t, "apt-print-uris-supertux.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Install) != 26 || len(plan.Remove) != 0 {
		t.Fatalf("install %d remove %d", len(plan.Install), len(plan.Remove))
	}
	byName := map[string]Package{}
	for _, p := range plan.Install {
		byName[p.Name] = p
	}
	if p := byName["fonts-roboto-unhinted"]; p.Version != "2:0~20170802-3" || p.Arch != "all" || p.Old != "" {
		t.Errorf("fonts-roboto-unhinted: %+v", p)
	}
	if p := byName["libopenal1"]; p.Version != "1:1.19.1-2" || p.Arch != "amd64" {
		t.Errorf("libopenal1: %+v", p)
	}
	if plan.NativeArch != "amd64" || plan.Show(byName["libopenal1"]) != "libopenal1" || plan.Show(byName["fonts-roboto-unhinted"]) != "fonts-roboto-unhinted" {
		t.Errorf("native arch %q: libopenal1 shown as %q", plan.NativeArch, plan.Show(byName["libopenal1"]))
	}
	if foreign := (Package{Name: "libc6", Arch: "i386"}); plan.Show(foreign) != "libc6:i386" {
		t.Errorf("foreign package shown as %q", plan.Show(foreign))
	}
	want := "fonts-roboto-unhinted_2%3a0~20170802-3_all.deb"
	found := false
	for _, a := range plan.Archives {
		if a == want {
			found = true
		}
	}
	if !found || len(plan.Archives) != 26 {
		t.Errorf("archives %q: want %s among 26", plan.Archives, want)
	}
	if got := ArchiveName("fonts-roboto-unhinted", "2:0~20170802-3", "all"); got != want {
		t.Errorf("ArchiveName = %s, want apt's %s", got, want)
	}
	// Exact sum of the URI lines; apt's summary says "180 MB".
	if plan.DownloadSize < 179e6 || plan.DownloadSize > 181e6 {
		t.Errorf("download %d", plan.DownloadSize)
	}
	// "301 MB", rounded up by one unit of the last digit.
	if plan.InstallSize != 302e6 {
		t.Errorf("install size %d, want 302000000", plan.InstallSize)
	}
}

func TestParseAptSummaryUpgradeAndRemove(t *testing.T) {
	plan, err := ParseAptSummary(open(t, "apt-print-uris-upgrade.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Install) != 141 {
		t.Fatalf("%d upgrades", len(plan.Install))
	}
	for _, p := range plan.Install {
		if p.Name == "libcap2" && (p.Old != "1:2.66-4+deb12u2+b2" || p.Version != "1:2.66-4+deb12u3+b1") {
			t.Errorf("libcap2: %+v", p)
		}
		if p.Old == "" {
			t.Errorf("upgrade without old version: %+v", p)
		}
	}
	plan, err = ParseAptSummary(open(t, "apt-print-uris-remove.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Remove) != 10 || plan.Remove[0].Name != "gdb" || plan.Remove[0].Version != "13.1-3" {
		t.Fatalf("remove %+v", plan.Remove)
	}
	if len(plan.Install) != 5 || plan.InstallSize != -75.5e6 {
		t.Fatalf("install %d size %d (75.4 MB freed)", len(plan.Install), plan.InstallSize)
	}
	// "autoremove" candidates are no part of the plan.
	for _, p := range append(plan.Install, plan.Remove...) {
		if p.Name == "locales" {
			t.Errorf("locales (only no longer required) in the plan")
		}
	}
}

func TestParseAptSize(t *testing.T) {
	for in, want := range map[string]int64{"0 B": 0, "13.2 kB": 13300, "301 MB": 302e6, "1,234 kB": 1235000, "9496 B": 9497} {
		if got, err := parseAptSize(in); err != nil || got != want {
			t.Errorf("%q = %d %v, want %d", in, got, err, want)
		}
	}
	if _, err := parseAptSize("12 parsecs"); err == nil {
		t.Error("bad unit accepted")
	}
}

func TestAptPlanUnknownPackage(t *testing.T) {
	var calls []string
	x := fakeExec(t, map[string]string{"apt-get --print-uris": "ERR:E: Unable to locate package nosuch\n"}, &calls)
	_, err := NewApt("/", x).Plan(context.Background(), Request{Op: OpInstall, Args: []string{"nosuch"}, ArchiveDir: "/x"})
	if !errors.Is(err, ErrUnknownPackage) || !strings.Contains(err.Error(), "Unable to locate package nosuch") {
		t.Fatalf("unknown package: %v", err)
	}
	if !strings.Contains(calls[0], "-o Dir::Cache::Archives=/x/") {
		t.Errorf("plan run without the archive directory: %q", calls[0])
	}
}

func TestAptJobArgv(t *testing.T) {
	a := NewApt("/", nil)
	job, err := a.Job(Request{Op: OpInstall, Args: []string{"sl"}, ArchiveDir: "/c/a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(job.Argv, " ")
	for _, want := range []string{"apt-get install -y -V", "APT::Status-Fd=3", "DPkg::Pre-Install-Pkgs::=" + GateHook, GateHookOptions + "::Version=3", "Dir::Cache::Archives=/c/a/", " sl"} {
		if !strings.Contains(line, want) {
			t.Errorf("argv %q lacks %q", line, want)
		}
	}
	if job.Gate == nil || !job.StatusFD {
		t.Error("apt's job has a gate and a status descriptor")
	}
	if _, err := a.Job(Request{Op: OpRemove, Args: []string{"sl"}}, nil); !errors.Is(err, ErrNeedPlan) {
		t.Errorf("remove without a plan: %v", err)
	}
	if _, err := a.Job(Request{Op: OpInstall, Args: []string{"/tmp/x.deb"}}, nil); !errors.Is(err, ErrNeedPlan) {
		t.Errorf("local file without a plan: %v", err)
	}
	job, _ = a.Job(Request{Op: OpRemove, Args: []string{"sl"}}, &Plan{Remove: []Package{{Name: "sl", Arch: "amd64"}, {Name: "dep"}}})
	if got := strings.Join(job.Argv, " "); got != "dpkg --status-fd 3 --remove sl:amd64 dep" {
		t.Errorf("remove argv %q", got)
	}
}

func TestAptProgress(t *testing.T) {
	ev := aptProgress(StreamStatus, "dlstatus:3:69.4060:Retrieving file 3 of 3")
	if len(ev) != 1 || ev[0].Phase != PhaseDownload || ev[0].Percent != 69.406 || ev[0].Text != "Retrieving file 3 of 3" {
		t.Errorf("dlstatus: %+v", ev)
	}
	ev = aptProgress(StreamStatus, "pmstatus:sl:20:Preparing sl (amd64)")
	if len(ev) != 1 || ev[0].Phase != PhaseInstall || ev[0].Percent != 20 {
		t.Errorf("pmstatus: %+v", ev)
	}
	if ev := aptProgress(StreamStdout, "dlstatus:1:0:x"); ev != nil {
		t.Errorf("stdout read as status: %+v", ev)
	}
	p := dpkgProgress(PhaseRemove, 2)
	p(StreamStatus, "processing: remove: a")
	ev = p(StreamStatus, "processing: remove: b")
	if len(ev) != 1 || ev[0].Percent != 99 || ev[0].Text != "Removing b" {
		t.Errorf("dpkg progress: %+v", ev)
	}
	ev = p(StreamStatus, "processing: trigproc: man-db:amd64")
	if len(ev) != 1 || ev[0].Percent != -1 || ev[0].Text != "Processing triggers for man-db:amd64" {
		t.Errorf("dpkg trigger progress: %+v", ev)
	}
}

// The gate's input is apt's Pre-Install-Pkgs protocol version 3; every
// archive it names is checked: missing is ErrArchiveMissing (not "invalid"),
// unreadable ErrBadArchive.
func TestAptGatePlan(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "libopenal1_1%3a1.19.1-2_amd64.deb")
	os.WriteFile(good, []byte("x"), 0o644)
	input := func(files ...string) []string {
		in := []string{"VERSION 3", "APT::Architecture=amd64", "quiet=1", "", "gdb 13.1-3 amd64 none > - - none **REMOVE**"}
		for _, f := range files {
			in = append(in, "libopenal1 - - none < 1:1.19.1-2 amd64 same "+f, "libopenal1 - - none < 1:1.19.1-2 amd64 same **CONFIGURE**")
		}
		return in
	}
	x := func(_ context.Context, argv []string) ([]byte, []byte, error) {
		switch {
		case argv[1] == "--ctrl-tarfile" && argv[2] == good:
			return ctrlTar(t, "Package: libopenal1\nVersion: 1:1.19.1-2\nArchitecture: amd64\nInstalled-Size: 100\n"), nil, nil
		case argv[1] == "--contents" && argv[2] == good:
			return []byte("-rw-r--r-- root/root 5 2023-01-01 00:00 ./usr/lib/x.so\n"), nil, nil
		}
		return nil, nil, &CommandError{Argv: argv, Code: 2, Stderr: "dpkg-deb: error: '" + argv[2] + "' is not a Debian format archive\n"}
	}
	a := NewApt(dir, x)
	plan, err := a.gatePlan(context.Background(), input(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Install) != 1 || plan.Install[0].InstalledSize != 100*1024 || plan.Archives[0] != good || len(plan.Remove) != 1 {
		t.Fatalf("gate plan %+v", plan)
	}
	_, err = a.gatePlan(context.Background(), input(filepath.Join(dir, "missing.deb")))
	if !errors.Is(err, ErrArchiveMissing) || errors.Is(err, ErrBadArchive) {
		t.Errorf("missing archive: %v", err)
	}
	bad := filepath.Join(dir, "bad.deb")
	os.WriteFile(bad, []byte("garbage"), 0o644)
	_, err = a.gatePlan(context.Background(), input(bad))
	if !errors.Is(err, ErrBadArchive) || errors.Is(err, ErrArchiveMissing) {
		t.Errorf("invalid archive: %v", err)
	}
	if _, err := a.gatePlan(context.Background(), []string{"VERSION 1", "/x.deb"}); err == nil {
		t.Error("protocol version 1 accepted")
	}
}

// ctrlTar is a control tarball as `dpkg-deb --ctrl-tarfile` writes it.
func ctrlTar(t *testing.T, control string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct{ name, data string }{{"./md5sums", "x  usr/lib/x.so\n"}, {"./control", control}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.data))
	}
	tw.Close()
	return b.Bytes()
}

// DebFields with the real dpkg-deb on a package built here: the control
// fields from its control member; a truncated archive is ErrBadArchive.
func TestDebFieldsReal(t *testing.T) {
	nstest.Need(t, "dpkg-deb")
	dir := t.TempDir()
	deb := debtest.Build(t, dir, debtest.Spec{Name: "ovtfields", Version: "1:2.0-1", Depends: "libc6 (>= 2.3)",
		Files: map[string]debtest.File{"usr/share/ovtfields/blob": {Size: 300 << 10}}})
	di, err := DebFields(context.Background(), HostExec("/"), deb)
	if err != nil {
		t.Fatal(err)
	}
	if di.Pkg.Name != "ovtfields" || di.Pkg.Version != "1:2.0-1" || di.Pkg.InstalledSize < 300<<10 || di.Control.Get("Depends") != "libc6 (>= 2.3)" {
		t.Errorf("fields: %+v %v", di.Pkg, di.Control)
	}
	data, _ := os.ReadFile(deb)
	cut := filepath.Join(dir, "cut.deb")
	os.WriteFile(cut, data[:200], 0o644)
	if _, err := DebFields(context.Background(), HostExec("/"), cut); !errors.Is(err, ErrBadArchive) {
		t.Errorf("truncated archive: %v", err)
	}
}
