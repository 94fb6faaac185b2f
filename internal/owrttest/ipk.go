package owrttest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// File is one file of an .ipk.
type File struct {
	Data string
	Mode int64 // 0: 0644
	// Size, when set, makes the file Size bytes of pseudo-random
	// (incompressible) data, streamed, never held in memory.
	Size  int64
	Zeros bool   // with Size: zero bytes instead (compresses to almost nothing)
	Link  string // a symbolic link to Link (Data ignored)
}

// Program is a File holding a shell script that prints msg.
func Program(msg string) File {
	return File{Data: "#!/bin/sh\necho '" + msg + "'\n", Mode: 0o755}
}

// Ipk describes an OpenWrt package.
type Ipk struct {
	Name, Version string // Version default "1.0-1"
	Arch          string // default "all"
	Depends       string
	Provides      string
	Files         map[string]File // "usr/bin/foo" -> content
	Conffiles     []string        // "/etc/foo.conf" (must be in Files)
	Postinst      string          // shell script bodies (#!/bin/sh added)
	Prerm         string
	Postrm        string
	Preinst       string
}

// FileName is NAME_VERSION_ARCH.ipk.
func (s Ipk) FileName() string {
	s.defaults()
	return fmt.Sprintf("%s_%s_%s.ipk", s.Name, s.Version, s.Arch)
}

func (s *Ipk) defaults() {
	if s.Version == "" {
		s.Version = "1.0-1"
	}
	if s.Arch == "" {
		s.Arch = "all"
	}
}

// BuildIpk writes the package into dir and returns its path.
func BuildIpk(t testing.TB, dir string, s Ipk) string {
	t.Helper()
	p, _, err := WriteIpk(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mtime is fixed so that the same spec builds the same bytes.
var mtime = time.Unix(1700000000, 0)

// WriteIpk writes NAME_VERSION_ARCH.ipk into dir in opkg-lede's format
// (a gzip'd tar of ./debian-binary, ./data.tar.gz, ./control.tar.gz) and
// returns its path and the control stanza (with Installed-Size, in bytes
// as opkg counts). Large files are streamed through a temporary
// data.tar.gz beside the result.
func WriteIpk(dir string, s Ipk) (string, string, error) {
	s.defaults()
	data, err := os.CreateTemp(dir, ".data-*.tar.gz")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(data.Name())
	defer data.Close()
	size, err := writeData(data, s.Files)
	if err != nil {
		return "", "", fmt.Errorf("%s: data.tar.gz: %w", s.Name, err)
	}
	var ctl strings.Builder
	fmt.Fprintf(&ctl, "Package: %s\nVersion: %s\n", s.Name, s.Version)
	if s.Depends != "" {
		fmt.Fprintf(&ctl, "Depends: %s\n", s.Depends)
	}
	if s.Provides != "" {
		fmt.Fprintf(&ctl, "Provides: %s\n", s.Provides)
	}
	fmt.Fprintf(&ctl, "Section: utils\nArchitecture: %s\nInstalled-Size: %d\nMaintainer: ovpkg tests\nDescription: %s, built by the ovpkg tests\n", s.Arch, size, s.Name)
	control := map[string]File{"control": {Data: ctl.String()}}
	if len(s.Conffiles) > 0 {
		control["conffiles"] = File{Data: strings.Join(s.Conffiles, "\n") + "\n"}
	}
	for n, body := range map[string]string{"postinst": s.Postinst, "prerm": s.Prerm, "postrm": s.Postrm, "preinst": s.Preinst} {
		if body != "" {
			control[n] = File{Data: "#!/bin/sh\n" + body + "\n", Mode: 0o755}
		}
	}
	var cbuf bytes.Buffer
	if _, err := writeTarGz(&cbuf, control, false); err != nil {
		return "", "", err
	}
	dsize, err := data.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", "", err
	}
	if _, err := data.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	out := filepath.Join(dir, s.FileName())
	f, err := os.Create(out)
	if err != nil {
		return "", "", err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	member := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o644, Size: size, ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	err = member("debian-binary", 4, strings.NewReader("2.0\n"))
	if err == nil {
		err = member("data.tar.gz", dsize, data)
	}
	if err == nil {
		err = member("control.tar.gz", int64(cbuf.Len()), &cbuf)
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return "", "", err
	}
	return out, ctl.String(), nil
}

// writeData writes files (with their parent directories) as a tar.gz and
// returns the sum of the file sizes.
func writeData(w io.Writer, files map[string]File) (int64, error) {
	return writeTarGz(w, files, true)
}

func writeTarGz(w io.Writer, files map[string]File, withDirs bool) (int64, error) {
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	norm := make(map[string]File, len(files))
	names := make([]string, 0, len(files))
	for n, f := range files {
		n = strings.Trim(n, "/")
		norm[n] = f
		names = append(names, n)
	}
	sort.Strings(names)
	var total int64
	dirs := map[string]bool{}
	if withDirs {
		if err := tw.WriteHeader(&tar.Header{Name: "./", Mode: 0o755, ModTime: mtime, Typeflag: tar.TypeDir}); err != nil {
			return 0, err
		}
	}
	for _, n := range names {
		f := norm[n]
		if withDirs {
			parts := strings.Split(n, "/")
			for i := 1; i < len(parts); i++ {
				d := strings.Join(parts[:i], "/")
				if !dirs[d] {
					dirs[d] = true
					if err := tw.WriteHeader(&tar.Header{Name: "./" + d + "/", Mode: 0o755, ModTime: mtime, Typeflag: tar.TypeDir}); err != nil {
						return 0, err
					}
				}
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: "./" + n, Mode: mode, ModTime: mtime, Typeflag: tar.TypeReg}
		var r io.Reader = strings.NewReader(f.Data)
		h.Size = int64(len(f.Data))
		switch {
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, f.Link, 0, 0o777
			r = strings.NewReader("")
		case f.Size > 0 && f.Zeros:
			h.Size = f.Size
			r = io.LimitReader(zeros{}, f.Size)
		case f.Size > 0:
			h.Size = f.Size
			r = io.LimitReader(rand.New(rand.NewSource(f.Size)), f.Size)
		}
		if err := tw.WriteHeader(h); err != nil {
			return 0, err
		}
		if _, err := io.Copy(tw, r); err != nil {
			return 0, err
		}
		total += h.Size
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return total, zw.Close()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// WriteFeed writes dir/Packages and dir/Packages.gz for the .ipk files
// in dir: each package's control stanza plus Filename, Size and
// SHA256sum, as OpenWrt's feeds have them.
func WriteFeed(dir string) error {
	ipks, err := filepath.Glob(filepath.Join(dir, "*.ipk"))
	if err != nil {
		return err
	}
	sort.Strings(ipks)
	var idx bytes.Buffer
	for _, p := range ipks {
		ctl, err := ipkControl(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		idx.WriteString(strings.TrimRight(ctl, "\n"))
		fmt.Fprintf(&idx, "\nFilename: %s\nSize: %d\nSHA256sum: %s\n\n", filepath.Base(p), n, hex.EncodeToString(h.Sum(nil)))
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages"), idx.Bytes(), 0o644); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(idx.Bytes())
	zw.Close()
	return os.WriteFile(filepath.Join(dir, "Packages.gz"), gz.Bytes(), 0o644)
}

// ipkControl reads the control file of an .ipk written by WriteIpk
// (streaming: data.tar.gz is skipped, not held).
func ipkControl(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return "", fmt.Errorf("no control.tar.gz: %w", err)
		}
		if strings.TrimPrefix(h.Name, "./") != "control.tar.gz" {
			continue
		}
		cz, err := gzip.NewReader(tr)
		if err != nil {
			return "", err
		}
		ct := tar.NewReader(cz)
		for {
			h, err := ct.Next()
			if err != nil {
				return "", fmt.Errorf("no control file: %w", err)
			}
			if strings.TrimPrefix(h.Name, "./") == "control" {
				b, err := io.ReadAll(io.LimitReader(ct, 1<<20))
				return string(b), err
			}
		}
	}
}
