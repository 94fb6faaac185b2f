package pkgmgr

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ApkInfo is what an .apk holds: its package and every path it writes
// ("usr/bin/x", no leading slash), directories apart.
type ApkInfo struct {
	Pkg    Package
	Paths  []string
	Dirs   []string
	Format int // 2 (tar.gz segments, Alpine) or 3 (ADB, apk-tools 3, OpenWrt 25.12+)
}

// MaxApkMeta caps the metadata block of a v3 .apk (its ADB block: the
// package info and the file list, not the file data). A package with
// 100 000 files has about 10 MB of it; anything bigger is refused rather
// than read into a small device's memory.
const MaxApkMeta = 32 << 20

// MaxApkEntries caps the files and directories of one package (OpenWrt's
// biggest have a few thousand): a crafted file list cannot make ovpkg
// build an unbounded one in memory.
const MaxApkEntries = 200000

var errTooManyEntries = fmt.Errorf("more than %d files: refusing to list them", MaxApkEntries)

// ReadApk reads an apk-tools package, streaming: of a v3 package (ADB,
// what `apk mkpkg` writes and OpenWrt ships) only the metadata block is
// read, the data blocks after it never are; of a v2 package (Alpine's
// concatenated tar.gz segments) the tar headers are read from the
// decompressing stream and the file data skipped. Memory stays at the
// size of the file list whatever the size of the package. It does not
// check signatures: apk does that when it installs.
func ReadApk(r io.Reader) (*ApkInfo, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("too short for a package (%w)", err)
	}
	switch {
	case bytes.Equal(magic[:3], []byte("ADB")):
		return readApkV3(br)
	case magic[0] == 0x1f && magic[1] == 0x8b:
		return readApkV2(br)
	}
	return nil, fmt.Errorf("neither an apk v3 (ADB) nor a v2 (gzip) package: starts with %q", magic)
}

// adb compression algorithms (apk-tools adb.h).
const (
	adbCompNone    = 0
	adbCompDeflate = 1
	adbCompZstd    = 2
)

// adb value types and block types (apk-tools adb.h, apk-v3(5)).
const (
	adbTypeSpecial = 0x0
	adbTypeInt     = 0x1
	adbTypeInt32   = 0x2
	adbTypeInt64   = 0x3
	adbTypeBlob8   = 0x8
	adbTypeBlob16  = 0x9
	adbTypeBlob32  = 0xa
	adbTypeArray   = 0xd
	adbTypeObject  = 0xe

	adbBlockADB = 0
	adbBlockExt = 3

	adbSchemaPackage = 0x676b6370 // "pckg"
)

// readApkV3 reads the ADB block of a v3 package and stops there.
func readApkV3(br *bufio.Reader) (*ApkInfo, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	var body io.Reader = br
	switch hdr[3] {
	case '.':
		body = io.MultiReader(bytes.NewReader(hdr[:]), br) // uncompressed: the magic is the file header's
	case 'd':
		body = flate.NewReader(br)
	case 'c':
		var spec [2]byte // struct adb_compression_spec { alg, level }
		if _, err := io.ReadFull(br, spec[:]); err != nil {
			return nil, err
		}
		switch spec[0] {
		case adbCompNone:
		case adbCompDeflate:
			body = flate.NewReader(br)
		case adbCompZstd:
			return nil, errors.New("zstd-compressed apk v3 package: ovpkg reads deflate and uncompressed ones (OpenWrt's); repack it with `apk mkpkg --compression deflate` or install it with `ovpkg pm -- add`")
		default:
			return nil, fmt.Errorf("apk v3 package with unknown compression %d", spec[0])
		}
	default:
		return nil, fmt.Errorf("apk v3 package with unknown header %q", hdr)
	}
	var fh [8]byte // struct adb_file_header { magic "ADB.", schema }
	if _, err := io.ReadFull(body, fh[:]); err != nil {
		return nil, fmt.Errorf("apk v3 header: %w", err)
	}
	if string(fh[:4]) != "ADB." {
		return nil, fmt.Errorf("apk v3 header: bad magic %q", fh[:4])
	}
	if s := binary.LittleEndian.Uint32(fh[4:]); s != adbSchemaPackage {
		return nil, fmt.Errorf("an apk v3 file of schema %q, not a package (an index or database?)", fh[4:])
	}
	var ts [4]byte
	if _, err := io.ReadFull(body, ts[:]); err != nil {
		return nil, fmt.Errorf("apk v3 block: %w", err)
	}
	typeSize := binary.LittleEndian.Uint32(ts[:])
	typ, length := typeSize>>30, uint64(typeSize&0x3fffffff)
	hdrLen := uint64(4)
	if typ == adbBlockExt { // struct adb_block { type_size, reserved, x_size }
		var ext [12]byte
		if _, err := io.ReadFull(body, ext[:]); err != nil {
			return nil, fmt.Errorf("apk v3 block: %w", err)
		}
		typ, length, hdrLen = typeSize&0x3fffffff, binary.LittleEndian.Uint64(ext[4:]), 16
	}
	if typ != adbBlockADB {
		return nil, fmt.Errorf("apk v3 package: first block is of type %d, not the metadata", typ)
	}
	if length < hdrLen+8 {
		return nil, errors.New("apk v3 package: metadata block too short")
	}
	length -= hdrLen
	if length > MaxApkMeta {
		return nil, fmt.Errorf("apk v3 package: metadata block of %d bytes (more than %d): refusing to read it", length, MaxApkMeta)
	}
	blk := make([]byte, length)
	if _, err := io.ReadFull(body, blk); err != nil {
		return nil, fmt.Errorf("apk v3 metadata block: %w", err)
	}
	// struct adb_hdr { u8 compat_ver, u8 ver, u16 reserved, adb_val_t root }
	if blk[0] != 0 {
		return nil, fmt.Errorf("apk v3 package: metadata format version %d is newer than ovpkg knows", blk[0])
	}
	a := adb(blk)
	root, err := a.obj(binary.LittleEndian.Uint32(blk[4:]))
	if err != nil {
		return nil, fmt.Errorf("apk v3 package: %w", err)
	}
	return a.pkg(root)
}

// adb is an ADB block; values point into it by offset.
type adb []byte

var errAdb = errors.New("corrupt metadata (a value points outside its block)")

func (a adb) at(off uint32, n uint64) ([]byte, error) {
	if uint64(off)+n > uint64(len(a)) {
		return nil, errAdb
	}
	return a[off : uint64(off)+n], nil
}

// obj returns the slots of an object or array value (slot 0 is the
// count, fields are numbered from 1); a null value is an empty object.
func (a adb) obj(v uint32) ([]uint32, error) {
	t, off := v>>28, v&0x0fffffff
	if t == adbTypeSpecial {
		return []uint32{1}, nil
	}
	if t != adbTypeObject && t != adbTypeArray {
		return nil, fmt.Errorf("corrupt metadata (type %#x where an object belongs)", t)
	}
	b, err := a.at(off, 4)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 {
		return []uint32{1}, nil
	}
	b, err = a.at(off, uint64(n)*4)
	if err != nil {
		return nil, err
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out, nil
}

// adbField returns slot i of an object (null when absent).
func adbField(o []uint32, i int) uint32 {
	if i < len(o) {
		return o[i]
	}
	return 0
}

func (a adb) blob(v uint32) (string, error) {
	t, off := v>>28, v&0x0fffffff
	var n, skip uint64
	switch t {
	case adbTypeSpecial:
		return "", nil
	case adbTypeBlob8:
		b, err := a.at(off, 1)
		if err != nil {
			return "", err
		}
		n, skip = uint64(b[0]), 1
	case adbTypeBlob16:
		b, err := a.at(off, 2)
		if err != nil {
			return "", err
		}
		n, skip = uint64(binary.LittleEndian.Uint16(b)), 2
	case adbTypeBlob32:
		b, err := a.at(off, 4)
		if err != nil {
			return "", err
		}
		n, skip = uint64(binary.LittleEndian.Uint32(b)), 4
	default:
		return "", fmt.Errorf("corrupt metadata (type %#x where a string belongs)", t)
	}
	b, err := a.at(off+uint32(skip), n)
	return string(b), err
}

func (a adb) int(v uint32) (uint64, error) {
	t, off := v>>28, v&0x0fffffff
	switch t {
	case adbTypeSpecial:
		return 0, nil
	case adbTypeInt:
		return uint64(off), nil
	case adbTypeInt32:
		b, err := a.at(off, 4)
		if err != nil {
			return 0, err
		}
		return uint64(binary.LittleEndian.Uint32(b)), nil
	case adbTypeInt64:
		b, err := a.at(off, 8)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("corrupt metadata (type %#x where a number belongs)", t)
}

// Field numbers of the v3 package schema (apk-tools apk_adb.h).
const (
	adbPkgInfo  = 1 // ADBI_PKG_PKGINFO
	adbPkgPaths = 2 // ADBI_PKG_PATHS

	adbPIName     = 1  // ADBI_PI_NAME
	adbPIVersion  = 2  // ADBI_PI_VERSION
	adbPIArch     = 5  // ADBI_PI_ARCH
	adbPISize     = 12 // ADBI_PI_INSTALLED_SIZE
	adbPIDepends  = 15 // ADBI_PI_DEPENDS
	adbPIProvides = 16 // ADBI_PI_PROVIDES

	adbDepName    = 1
	adbDepVersion = 2
	adbDepMatch   = 3

	adbDirName  = 1 // ADBI_DI_NAME
	adbDirFiles = 3 // ADBI_DI_FILES
	adbFileName = 1 // ADBI_FI_NAME
)

func (a adb) pkg(root []uint32) (*ApkInfo, error) {
	pi, err := a.obj(adbField(root, adbPkgInfo))
	if err != nil {
		return nil, err
	}
	info := &ApkInfo{Format: 3}
	p := &info.Pkg
	if p.Name, err = a.blob(adbField(pi, adbPIName)); err != nil {
		return nil, err
	}
	if p.Name == "" {
		return nil, errors.New("apk v3 package without a name")
	}
	if p.Version, err = a.blob(adbField(pi, adbPIVersion)); err != nil {
		return nil, err
	}
	if p.Arch, err = a.blob(adbField(pi, adbPIArch)); err != nil {
		return nil, err
	}
	size, err := a.int(adbField(pi, adbPISize))
	if err != nil {
		return nil, err
	}
	p.InstalledSize = int64(size)
	deps, err := a.deps(adbField(pi, adbPIDepends))
	if err != nil {
		return nil, err
	}
	p.Depends = apkDepends(deps)
	prov, err := a.deps(adbField(pi, adbPIProvides))
	if err != nil {
		return nil, err
	}
	p.Provides = apkProvides(prov)
	dirs, err := a.obj(adbField(root, adbPkgPaths))
	if err != nil {
		return nil, err
	}
	for _, dv := range dirs[1:] {
		d, err := a.obj(dv)
		if err != nil {
			return nil, err
		}
		dname, err := a.blob(adbField(d, adbDirName))
		if err != nil {
			return nil, err
		}
		dname = strings.Trim(dname, "/")
		if !safeRel(dname) {
			return nil, fmt.Errorf("apk v3 package: unsafe directory name %q", dname)
		}
		if len(info.Paths)+len(info.Dirs) >= MaxApkEntries || len(info.Paths)+len(info.Dirs) > len(a)/4 {
			return nil, fmt.Errorf("apk v3 package: %w", errTooManyEntries)
		}
		if dname != "" {
			info.Dirs = append(info.Dirs, dname)
		}
		files, err := a.obj(adbField(d, adbDirFiles))
		if err != nil {
			return nil, err
		}
		for _, fv := range files[1:] {
			f, err := a.obj(fv)
			if err != nil {
				return nil, err
			}
			fname, err := a.blob(adbField(f, adbFileName))
			if err != nil {
				return nil, err
			}
			if len(info.Paths)+len(info.Dirs) >= MaxApkEntries || len(info.Paths)+len(info.Dirs) > len(a)/4 {
				return nil, fmt.Errorf("apk v3 package: %w", errTooManyEntries)
			}
			if fname == "" || fname == "." || fname == ".." || strings.Contains(fname, "/") {
				return nil, fmt.Errorf("apk v3 package: bad file name %q in /%s", fname, dname)
			}
			if dname != "" {
				fname = dname + "/" + fname
			}
			info.Paths = append(info.Paths, fname)
		}
	}
	return info, nil
}

// deps renders a v3 dependency array as apk writes dependencies
// ("name", "name>=1.0", "!name").
func (a adb) deps(v uint32) ([]string, error) {
	arr, err := a.obj(v)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, dv := range arr[1:] {
		d, err := a.obj(dv)
		if err != nil {
			return nil, err
		}
		name, err := a.blob(adbField(d, adbDepName))
		if err != nil {
			return nil, err
		}
		ver, err := a.blob(adbField(d, adbDepVersion))
		if err != nil {
			return nil, err
		}
		match, err := a.int(adbField(d, adbDepMatch))
		if err != nil {
			return nil, err
		}
		out = append(out, apkDepString(name, ver, match))
	}
	return out, nil
}

// apk version match bits (apk-tools apk_version.h).
const (
	apkVerEqual    = 1
	apkVerLess     = 2
	apkVerGreater  = 4
	apkVerFuzzy    = 8
	apkVerConflict = 16
)

func apkDepString(name, ver string, match uint64) string {
	if match == 0 {
		match = apkVerEqual
	}
	bang := ""
	if match&apkVerConflict != 0 {
		bang = "!"
	}
	if ver == "" {
		return bang + name
	}
	op := "?"
	switch match &^ apkVerConflict {
	case apkVerLess:
		op = "<"
	case apkVerLess | apkVerEqual:
		op = "<="
	case apkVerLess | apkVerEqual | apkVerFuzzy:
		op = "<~"
	case apkVerEqual | apkVerFuzzy, apkVerFuzzy:
		op = "~"
	case apkVerEqual:
		op = "="
	case apkVerGreater | apkVerEqual:
		op = ">="
	case apkVerGreater | apkVerEqual | apkVerFuzzy:
		op = ">~"
	case apkVerGreater:
		op = ">"
	case apkVerLess | apkVerGreater:
		op = "><"
	}
	return bang + name + op + ver
}

// apkDepName is the name of an apk dependency or provide ("so:libc.so.6"
// of "so:libc.so.6=1", "foo" of "foo>=1.0" or "!foo").
func apkDepName(d string) string {
	d = strings.TrimPrefix(d, "!")
	if i := strings.IndexAny(d, "<>=~"); i >= 0 {
		d = d[:i]
	}
	return d
}

// apkDepends joins apk dependencies into Package.Depends (comma-separated
// names as apk wrote them; conflicts, "!name", are left out).
func apkDepends(deps []string) string {
	var out []string
	for _, d := range deps {
		if d != "" && !strings.HasPrefix(d, "!") {
			out = append(out, d)
		}
	}
	return strings.Join(out, ", ")
}

// apkProvides keeps the names of apk provides ("cmd:foo=1" -> "cmd:foo").
func apkProvides(prov []string) []string {
	var out []string
	for _, p := range prov {
		if n := apkDepName(p); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// readApkV2 reads an Alpine v2 package: gzip members (signature, control
// with .PKGINFO, data) that read as one tar stream.
func readApkV2(br *bufio.Reader) (*ApkInfo, error) {
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, err
	}
	info := &ApkInfo{Format: 2}
	tr := tar.NewReader(zr)
	sawInfo := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("apk v2 package: %w", err)
		}
		name := strings.Trim(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" {
			continue
		}
		if strings.HasPrefix(name, ".") && !strings.Contains(name, "/") {
			// Control members: .SIGN.*, .PKGINFO, .pre-install ...
			if name == ".PKGINFO" {
				b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
				if err != nil {
					return nil, fmt.Errorf("apk v2 .PKGINFO: %w", err)
				}
				if err := parsePkgInfo(b, &info.Pkg); err != nil {
					return nil, err
				}
				sawInfo = true
			}
			continue
		}
		if len(info.Paths)+len(info.Dirs) >= MaxApkEntries {
			return nil, fmt.Errorf("apk v2 package: %w", errTooManyEntries)
		}
		if !safeRel(name) {
			return nil, fmt.Errorf("apk v2 package: unsafe path %q", name)
		}
		if h.Typeflag == tar.TypeDir {
			info.Dirs = append(info.Dirs, name)
		} else {
			info.Paths = append(info.Paths, name)
		}
	}
	if !sawInfo {
		return nil, errors.New("apk v2 package without .PKGINFO")
	}
	return info, nil
}

// parsePkgInfo reads a v2 .PKGINFO ("key = value" lines).
func parsePkgInfo(b []byte, p *Package) error {
	var deps, prov []string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, " = ")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		switch strings.TrimSpace(k) {
		case "pkgname":
			p.Name = v
		case "pkgver":
			p.Version = v
		case "arch":
			p.Arch = v
		case "size":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return fmt.Errorf("apk v2 .PKGINFO: bad size %q", v)
			}
			p.InstalledSize = n
		case "depend":
			deps = append(deps, v)
		case "provides":
			prov = append(prov, v)
		}
	}
	if p.Name == "" {
		return errors.New("apk v2 .PKGINFO without pkgname")
	}
	p.Depends, p.Provides = apkDepends(deps), apkProvides(prov)
	return nil
}

// safeRel says whether p (relative, no leading slash) has no empty, "."
// or ".." component: a package path that stays where it says.
func safeRel(p string) bool {
	if p == "" {
		return true
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}
