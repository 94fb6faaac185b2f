package pkgmgr

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// IpkInfo is what an .ipk holds.
type IpkInfo struct {
	Pkg   Package
	Paths []string
	Dirs  []string
}

// MaxIpkControl bounds an .ipk's control.tar.gz (maintainer scripts,
// conffiles, the control file: kilobytes in practice), the only member
// ReadIpk holds in memory.
const MaxIpkControl = 4 << 20

// ReadIpk reads an OpenWrt/opkg package from a stream: a gzipped tar
// (opkg-lede's format) or an ar archive (older opkg, Yocto) holding
// control.tar.gz and data.tar.gz, in either order. Only control.tar.gz is
// held in memory (at most MaxIpkControl); data.tar.gz is decompressed on
// the fly and only its headers are kept, so memory does not grow with the
// package's size. Paths with ".." or other unclean names are refused.
// Pure Go: no opkg needed to check a package before installing it.
func ReadIpk(r io.Reader) (*IpkInfo, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(8)
	if err != nil {
		return nil, fmt.Errorf("too short for an .ipk: %w", err)
	}
	var next func() (string, io.Reader, error)
	if bytes.Equal(magic, []byte("!<arch>\n")) {
		br.Discard(8)
		next = arMembers(br)
	} else {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("neither ar nor gzip: %w", err)
		}
		tr := tar.NewReader(zr)
		next = func() (string, io.Reader, error) {
			for {
				h, err := tr.Next()
				if err != nil {
					return "", nil, err
				}
				if h.Typeflag == tar.TypeReg {
					return strings.TrimPrefix(h.Name, "./"), tr, nil
				}
			}
		}
	}
	var info IpkInfo
	var control []byte
	haveData, haveControl := false, false
	for {
		name, m, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch name {
		case "control.tar.gz":
			if haveControl {
				return nil, errors.New("two control.tar.gz members")
			}
			haveControl = true
			if control, err = readControl(m); err != nil {
				return nil, fmt.Errorf("control.tar.gz: %w", err)
			}
		case "data.tar.gz":
			if haveData {
				return nil, errors.New("two data.tar.gz members")
			}
			haveData = true
			if err := info.readData(m); err != nil {
				return nil, fmt.Errorf("data.tar.gz: %w", err)
			}
		}
	}
	switch {
	case !haveControl:
		return nil, errors.New("no control.tar.gz inside")
	case !haveData:
		return nil, errors.New("no data.tar.gz inside")
	case control == nil:
		return nil, errors.New("control.tar.gz has no control file")
	}
	st, err := ParseStanzas("control", bytes.NewReader(control))
	if err != nil || len(st) != 1 {
		return nil, fmt.Errorf("control file unreadable (%v)", err)
	}
	if info.Pkg, err = packageFromStanza("control", st[0], 1); err != nil {
		return nil, err
	}
	return &info, nil
}

// readControl returns the control file of a control.tar.gz stream
// (nil when it has none), refusing one larger than MaxIpkControl.
func readControl(r io.Reader) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: MaxIpkControl + 1}
	zr, err := gzip.NewReader(lr)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	var control []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if lr.N <= 0 {
			return nil, fmt.Errorf("larger than %d bytes: not a control archive", MaxIpkControl)
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg && strings.TrimPrefix(h.Name, "./") == "control" {
			if control, err = io.ReadAll(io.LimitReader(tr, MaxIpkControl)); err != nil {
				return nil, err
			}
		}
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("larger than %d bytes: not a control archive", MaxIpkControl)
	}
	return control, nil
}

// readData records the paths of a data.tar.gz stream; file contents are
// skipped as they stream past.
func (info *IpkInfo) readData(r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.Trim(strings.TrimPrefix(h.Name, "."), "/")
		if name == "" {
			continue
		}
		if path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unsafe path %q", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			info.Dirs = append(info.Dirs, name)
		} else {
			info.Paths = append(info.Paths, name)
		}
	}
}

// arMembers iterates over the members of an ar stream (after the magic),
// each as a reader limited to its size; a member not read to its end is
// skipped when the next one is asked for.
func arMembers(r *bufio.Reader) func() (string, io.Reader, error) {
	var cur *io.LimitedReader
	pad := false
	return func() (string, io.Reader, error) {
		if cur != nil {
			if _, err := io.Copy(io.Discard, cur); err != nil {
				return "", nil, err
			}
			if pad {
				if _, err := r.Discard(1); err != nil && err != io.EOF {
					return "", nil, err
				}
			}
		}
		var hdr [60]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return "", nil, io.EOF
			}
			return "", nil, errors.New("corrupt ar header")
		}
		if hdr[58] != '`' || hdr[59] != '\n' {
			return "", nil, errors.New("corrupt ar header")
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return "", nil, errors.New("corrupt ar header")
		}
		cur = &io.LimitedReader{R: r, N: size}
		pad = size%2 == 1
		return name, cur, nil
	}
}
