package qemutest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Entry is one file of an initramfs.
type Entry struct {
	Name  string // path inside, without a leading slash
	Mode  uint32 // permission bits and the type (S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR)
	Data  []byte // file contents, or the link target
	Major uint32 // device nodes
	Minor uint32
}

// File types for Entry.Mode.
const (
	TypeReg = 0o100000
	TypeDir = 0o040000
	TypeLnk = 0o120000
	TypeChr = 0o020000
)

// WriteCPIO writes entries as an uncompressed newc archive (what the
// kernel unpacks as an initramfs), parents before children.
func WriteCPIO(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	ino := 1
	hdr := func(name string, mode uint32, size int, major, minor uint32) error {
		_, err := fmt.Fprintf(bw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, size, 0, 0, major, minor, len(name)+1, 0)
		ino++
		if err != nil {
			return err
		}
		bw.WriteString(name)
		bw.WriteByte(0)
		pad(bw, 110+len(name)+1)
		return nil
	}
	for _, e := range entries {
		name := strings.TrimPrefix(e.Name, "/")
		size := 0
		if e.Mode&0o170000 == TypeReg || e.Mode&0o170000 == TypeLnk {
			size = len(e.Data)
		}
		if err := hdr(name, e.Mode, size, e.Major, e.Minor); err != nil {
			return err
		}
		if size > 0 {
			bw.Write(e.Data)
			pad(bw, size)
		}
	}
	if err := hdr("TRAILER!!!", 0, 0, 0, 0); err != nil {
		return err
	}
	return bw.Flush()
}

func pad(w *bufio.Writer, n int) {
	for n%4 != 0 {
		w.WriteByte(0)
		n++
	}
}

// Tree collects initramfs entries, making parent directories as needed.
type Tree struct {
	entries []Entry
	dirs    map[string]bool
}

// Dir adds a directory (and its parents).
func (t *Tree) Dir(name string) {
	if t.dirs == nil {
		t.dirs = map[string]bool{}
	}
	name = strings.Trim(name, "/")
	if name == "" || name == "." || t.dirs[name] {
		return
	}
	t.Dir(filepath.Dir(name))
	t.dirs[name] = true
	t.entries = append(t.entries, Entry{Name: name, Mode: TypeDir | 0o755})
}

// File adds a regular file.
func (t *Tree) File(name string, data []byte, perm uint32) {
	t.Dir(filepath.Dir(strings.Trim(name, "/")))
	t.entries = append(t.entries, Entry{Name: name, Mode: TypeReg | perm, Data: data})
}

// CopyFile adds the host file src as name.
func (t *Tree) CopyFile(name, src string, perm uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	t.File(name, b, perm)
	return nil
}

// Symlink adds a symbolic link.
func (t *Tree) Symlink(name, target string) {
	t.Dir(filepath.Dir(strings.Trim(name, "/")))
	t.entries = append(t.entries, Entry{Name: name, Mode: TypeLnk | 0o777, Data: []byte(target)})
}

// CharDev adds a character device node.
func (t *Tree) CharDev(name string, major, minor uint32) {
	t.Dir(filepath.Dir(strings.Trim(name, "/")))
	t.entries = append(t.entries, Entry{Name: name, Mode: TypeChr | 0o600, Major: major, Minor: minor})
}

// Write writes the archive to path.
func (t *Tree) Write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteCPIO(f, t.entries); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
