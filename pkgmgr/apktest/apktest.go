// Package apktest builds apk-tools 3 packages and repositories for tests
// with the real `apk mkpkg` and `apk mkndx`, signed with a test key or
// unsigned, and runs apk on a test root. It is for tests only.
package apktest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// File is one file of a package.
type File struct {
	Data string
	Mode os.FileMode // 0: 0644
	// Size, when set, makes the file Size bytes of pseudo-random
	// (incompressible) data, written in chunks, never held in memory.
	Size int64
	Link string // a symbolic link to Link
	Dir  bool   // an (empty) directory
}

// Program is a File holding a shell script that prints msg.
func Program(msg string) File {
	return File{Data: "#!/bin/sh\necho '" + msg + "'\n", Mode: 0o755}
}

// Spec describes a package.
type Spec struct {
	Name, Version string // Version default "1.0-r1"
	Arch          string // default "noarch"
	Depends       []string
	Provides      []string
	Files         map[string]File   // "usr/bin/foo" -> content
	Scripts       map[string]string // "post-install" -> body (#!/bin/sh added)
	// Compression is apk's --compression ("none", "deflate", "zstd");
	// "" is apk's default.
	Compression string
}

// FileName is NAME-VERSION.apk, as apk names repository packages.
func (s Spec) FileName() string {
	s.defaults()
	return s.Name + "-" + s.Version + ".apk"
}

func (s *Spec) defaults() {
	if s.Version == "" {
		s.Version = "1.0-r1"
	}
	if s.Arch == "" {
		s.Arch = "noarch"
	}
}

// Key is a signing key pair (ECDSA P-256, as OpenWrt's).
type Key struct {
	Name    string // file name of the public key in etc/apk/keys
	Private string // PKCS#8 PEM
	Public  string // PKIX PEM
}

// NewKey makes a key pair in dir named name (name.pem is the public key,
// name.key the private one).
func NewKey(t testing.TB, dir, name string) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key := Key{Name: name + ".pem", Private: filepath.Join(dir, name+".key"), Public: filepath.Join(dir, name+".pem")}
	if err := os.WriteFile(key.Private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key.Public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// Trust copies the key's public half into root/etc/apk/keys.
func (k Key) Trust(t testing.TB, root string) {
	t.Helper()
	b, err := os.ReadFile(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(root, "etc/apk/keys")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, k.Name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Command runs the host's apk (the static test build) with APK_CONFIG
// pointing nowhere, so that no configuration of this machine leaks in.
func Command(apk string, args ...string) *exec.Cmd {
	cmd := exec.Command(apk, args...)
	cmd.Env = append(os.Environ(), "APK_CONFIG=/dev/null")
	return cmd
}

func run(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// Build makes the package in dir with `apk mkpkg`, signed with key
// unless key is nil, and returns its path.
func Build(t testing.TB, apk, dir string, key *Key, s Spec) string {
	t.Helper()
	p, err := BuildErr(apk, dir, key, s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BuildErr is Build returning the error.
func BuildErr(apk, dir string, key *Key, s Spec) (string, error) {
	s.defaults()
	stage, err := os.MkdirTemp(dir, ".stage-"+s.Name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage) // a scratch directory of ours, never a mount point
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := writeFile(filepath.Join(stage, "files", n), s.Files[n]); err != nil {
			return "", fmt.Errorf("%s: %s: %w", s.Name, n, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(stage, "files"), 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, s.FileName())
	args := []string{"mkpkg", "--info", "name:" + s.Name, "--info", "version:" + s.Version, "--info", "arch:" + s.Arch,
		"--info", "description:" + s.Name + ", built by the ovpkg tests", "--files", filepath.Join(stage, "files"), "--output", out}
	if len(s.Depends) > 0 {
		args = append(args, "--info", "depends:"+strings.Join(s.Depends, " "))
	}
	if len(s.Provides) > 0 {
		args = append(args, "--info", "provides:"+strings.Join(s.Provides, " "))
	}
	var scripts []string
	for k := range s.Scripts {
		scripts = append(scripts, k)
	}
	sort.Strings(scripts)
	for _, k := range scripts {
		p := filepath.Join(stage, k)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+s.Scripts[k]+"\n"), 0o755); err != nil {
			return "", err
		}
		args = append(args, "--script", k+":"+p)
	}
	if s.Compression != "" {
		args = append(args, "--compression", s.Compression)
	}
	if key != nil {
		args = append(args, "--sign-key", key.Private)
	}
	cmd := Command(apk, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apk %s: %v: %s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

func writeFile(p string, f File) error {
	if f.Dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if f.Link != "" {
		return os.Symlink(f.Link, p)
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if f.Size > 0 {
		_, err = io.CopyN(w, mrand.New(mrand.NewSource(f.Size)), f.Size)
	} else {
		_, err = io.WriteString(w, f.Data)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(p, mode) // past the umask
	}
	return err
}

// Repo is a repository directory: packages and their index.
type Repo struct {
	Dir   string
	Index string // Dir/packages.adb
}

// NewRepo builds every spec into dir and indexes them with `apk mkndx`
// (signed with key unless key is nil).
func NewRepo(t testing.TB, apk, dir string, key *Key, specs ...Spec) Repo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		Build(t, apk, dir, key, s)
	}
	r := Repo{Dir: dir, Index: filepath.Join(dir, "packages.adb")}
	r.Reindex(t, apk, key)
	return r
}

// Add builds more packages into the repository and reindexes it.
func (r Repo) Add(t testing.TB, apk string, key *Key, specs ...Spec) {
	t.Helper()
	for _, s := range specs {
		Build(t, apk, r.Dir, key, s)
	}
	r.Reindex(t, apk, key)
}

// Reindex rewrites packages.adb from the .apk files in the directory.
func (r Repo) Reindex(t testing.TB, apk string, key *Key) {
	t.Helper()
	pkgs, _ := filepath.Glob(filepath.Join(r.Dir, "*.apk"))
	args := []string{"mkndx", "--allow-untrusted", "--output", r.Index}
	if key != nil {
		args = append(args, "--sign-key", key.Private)
	}
	run(t, Command(apk, append(args, pkgs...)...))
}

// InitRoot makes root an apk root: the database (apk add --initdb, run
// from the host with --root), repositories (paths as seen from inside
// the root), and the trusted keys.
func InitRoot(t testing.TB, apk, root string, repos []string, keys ...Key) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc/apk"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		k.Trust(t, root)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/apk/repositories"), []byte(strings.Join(repos, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, Command(apk, "--root", root, "add", "--initdb", "--no-scripts"))
}

// BuildV2 writes an Alpine v2 package (unsigned: a control tar.gz segment
// holding .PKGINFO and a data tar.gz segment, concatenated, the first
// without its end-of-archive blocks) as apk-tools 2's abuild makes them,
// and returns its path. Only regular files, links and directories.
func BuildV2(t testing.TB, dir string, s Spec) string {
	t.Helper()
	s.defaults()
	var data bytes.Buffer
	size := int64(0)
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	if err := writeTarGz(&data, func(tw *tar.Writer) error {
		for _, n := range names {
			f := s.Files[n]
			h := &tar.Header{Name: n, Mode: int64(f.Mode), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			switch {
			case f.Dir:
				h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
			case f.Link != "":
				h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, f.Link
			}
			size += h.Size
			if !f.Dir { // abuild embeds each file's sha1 (of a link: of its target)
				c := sha1.Sum([]byte(f.Data + f.Link))
				h.PAXRecords = map[string]string{"APK-TOOLS.checksum.SHA1": hex.EncodeToString(c[:])}
				h.Format = tar.FormatPAX
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, f.Data); err != nil && h.Size > 0 {
				return err
			}
		}
		return nil
	}, true); err != nil {
		t.Fatal(err)
	}
	var info strings.Builder
	sum := sha256.Sum256(data.Bytes()) // apk checks the data segment against it
	fmt.Fprintf(&info, "# Generated by the ovpkg tests\npkgname = %s\npkgver = %s\narch = %s\nsize = %d\npkgdesc = %s\ndatahash = %s\n",
		s.Name, s.Version, s.Arch, size, s.Name, hex.EncodeToString(sum[:]))
	for _, d := range s.Depends {
		fmt.Fprintf(&info, "depend = %s\n", d)
	}
	for _, p := range s.Provides {
		fmt.Fprintf(&info, "provides = %s\n", p)
	}
	var ctl bytes.Buffer
	if err := writeTarGz(&ctl, func(tw *tar.Writer) error {
		if err := tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(info.Len()), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.WriteString(tw, info.String())
		return err
	}, false); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, s.FileName())
	if err := os.WriteFile(out, append(ctl.Bytes(), data.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// writeTarGz writes one gzip member holding a tar stream; without end the
// tar's end-of-archive blocks are left out (apk v2 segments but the last).
func writeTarGz(w io.Writer, fill func(*tar.Writer) error, end bool) error {
	zw := gzip.NewWriter(w)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b := raw.Bytes()
	if end {
		if err := tw.Close(); err != nil {
			return err
		}
		b = raw.Bytes()
	}
	if _, err := zw.Write(b); err != nil {
		return err
	}
	return zw.Close()
}
