package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotFound says no module file of that name or alias exists.
var ErrNotFound = errors.New("no such module")

// Error is a module that could not be loaded, with the file and errno.
type Error struct {
	Module string
	File   string
	Err    error
}

func (e *Error) Error() string {
	if e.File == "" {
		return "module " + e.Module + ": " + e.Err.Error()
	}
	return "module " + e.Module + " (" + e.File + "): " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Dir is the module directory of one kernel release.
type Dir struct {
	Path      string // /lib/modules/<release>
	SysModule string // where loaded modules show; "" = /sys/module

	// Insert loads one module file; nil = finit_module(2). Tests set it.
	Insert func(file string) error

	indexed  bool
	hasDep   bool
	files    map[string]string   // module name -> file (absolute)
	deps     map[string][]string // module name -> dependency names, as modules.dep lists them
	aliases  []alias
	builtin  map[string]bool
	loaded   map[string]bool // loaded by this Dir (or found loaded)
	Loaded   []string        // names this Dir inserted, in order
	fallback bool            // no modules.dep: read .modinfo
}

type alias struct{ pattern, name string }

// Open returns the module directory of release under root (root "/" for
// the running system). It reads nothing yet.
func Open(root, release string) *Dir {
	return &Dir{Path: filepath.Join(root, "lib", "modules", release)}
}

// Release returns the running kernel's release (uname -r).
func Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// Name normalises a module name as the kernel does ('-' and '_' are the
// same).
func Name(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

func (d *Dir) sysModule() string {
	if d.SysModule == "" {
		return "/sys/module"
	}
	return d.SysModule
}

// index reads modules.dep, modules.alias and modules.builtin (or, without
// modules.dep, lists the module files).
func (d *Dir) index() error {
	if d.indexed {
		return nil
	}
	d.files, d.deps, d.builtin, d.loaded = map[string]string{}, map[string][]string{}, map[string]bool{}, map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(d.Path, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			d.builtin[Name(l)] = true
		}
	}
	f, err := os.Open(filepath.Join(d.Path, "modules.dep"))
	switch {
	case err == nil:
		defer f.Close()
		d.hasDep = true
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			mod, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n := Name(mod)
			d.files[n] = d.abs(mod)
			var deps []string
			for _, p := range strings.Fields(rest) {
				dn := Name(p)
				deps = append(deps, dn)
				if _, ok := d.files[dn]; !ok {
					d.files[dn] = d.abs(p)
				}
			}
			d.deps[n] = deps
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", f.Name(), err)
		}
	case errors.Is(err, fs.ErrNotExist):
		d.fallback = true
		if err := d.walk(); err != nil {
			return err
		}
	default:
		return err
	}
	if b, err := os.ReadFile(filepath.Join(d.Path, "modules.alias")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == "alias" {
				d.aliases = append(d.aliases, alias{f[1], Name(f[2])})
			}
		}
	}
	d.indexed = true
	return nil
}

func (d *Dir) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.Path, p)
}

// walk lists every module file under the directory (no modules.dep).
func (d *Dir) walk() error {
	return filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == d.Path {
				return err
			}
			return nil
		}
		if !e.IsDir() && isModuleFile(p) {
			if _, ok := d.files[Name(p)]; !ok {
				d.files[Name(p)] = p
			}
		}
		return nil
	})
}

func isModuleFile(p string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// Resolve returns the module name for name, which may be an alias
// (modules.alias; without it, "fs-X" means module X, and ext2/ext3 are
// served by ext4).
func (d *Dir) Resolve(name string) (string, error) {
	if err := d.index(); err != nil {
		return "", err
	}
	n := Name(name)
	if d.builtin[n] || d.files[n] != "" {
		return n, nil
	}
	for _, a := range d.aliases {
		if ok, _ := path.Match(a.pattern, name); ok {
			return a.name, nil
		}
	}
	if fsName, ok := strings.CutPrefix(name, "fs-"); ok {
		cands := []string{Name(fsName)}
		if fsName == "ext2" || fsName == "ext3" {
			cands = append(cands, "ext4")
		}
		for _, c := range cands {
			if d.builtin[c] || d.files[c] != "" {
				return c, nil
			}
		}
	}
	return "", &Error{Module: name, Err: fmt.Errorf("%w in %s", ErrNotFound, d.Path)}
}

// Present reports whether module name is in the kernel already: built in
// (modules.builtin), loaded by this Dir, or shown in /sys/module (a
// loaded module, or a built-in one with parameters).
func (d *Dir) Present(name string) bool {
	n := Name(name)
	if d.builtin[n] || d.loaded[n] {
		return true
	}
	_, err := os.Stat(filepath.Join(d.sysModule(), n))
	return err == nil
}

// Load loads module name (a name or an alias) and what it depends on,
// unless the kernel has it already.
func (d *Dir) Load(name string) error {
	n, err := d.Resolve(name)
	if err != nil {
		return err
	}
	return d.load(n, map[string]bool{})
}

func (d *Dir) load(n string, visiting map[string]bool) error {
	if d.Present(n) {
		d.loaded[n] = true
		return nil
	}
	if visiting[n] {
		return &Error{Module: n, Err: errors.New("dependency loop")}
	}
	visiting[n] = true
	file := d.files[n]
	if file == "" {
		return &Error{Module: n, Err: fmt.Errorf("%w in %s", ErrNotFound, d.Path)}
	}
	deps, err := d.depsOf(n, file)
	if err != nil {
		return err
	}
	// modules.dep lists the deepest dependency last: load from the end.
	for i := len(deps) - 1; i >= 0; i-- {
		if err := d.load(deps[i], visiting); err != nil {
			return fmt.Errorf("%s needs it: %w", n, err)
		}
	}
	insert := d.Insert
	if insert == nil {
		insert = Insert
	}
	if err := insert(file); err != nil {
		return &Error{Module: n, File: file, Err: err}
	}
	d.loaded[n] = true
	d.Loaded = append(d.Loaded, n)
	return nil
}

func (d *Dir) depsOf(n, file string) ([]string, error) {
	if !d.fallback {
		return d.deps[n], nil
	}
	if deps, ok := d.deps[n]; ok {
		return deps, nil
	}
	info, err := ModInfo(file)
	if err != nil {
		return nil, &Error{Module: n, File: file, Err: err}
	}
	var deps []string
	for _, v := range info["depends"] {
		for _, dep := range strings.Split(v, ",") {
			if dep != "" {
				deps = append(deps, Name(dep))
			}
		}
	}
	// Without modules.dep the order is unknown: load all of them before.
	d.deps[n] = deps
	return deps, nil
}

// Insert loads one module file with finit_module(2); EEXIST (loaded
// meanwhile) is success.
func Insert(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(file, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil && flags != 0 && errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w (a compressed module; the kernel may lack in-kernel decompression)", err)
	}
	return err
}

// ModInfo reads the key=value strings of an uncompressed module's
// .modinfo section (depends, alias, name, vermagic, ...). It scans the
// file for them rather than parsing ELF: every such string is
// NUL-terminated and starts after a NUL.
func ModInfo(file string) (map[string][]string, error) {
	if !strings.HasSuffix(file, ".ko") {
		return nil, fmt.Errorf("cannot read the module information of a compressed module without modules.dep (run depmod)")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, key := range []string{"depends", "alias", "name", "vermagic"} {
		pat := []byte("\x00" + key + "=")
		for rest := b; ; {
			i := bytes.Index(rest, pat)
			if i < 0 {
				break
			}
			rest = rest[i+len(pat):]
			j := bytes.IndexByte(rest, 0)
			if j < 0 {
				break
			}
			out[key] = append(out[key], string(rest[:j]))
			rest = rest[j:]
		}
	}
	if len(out["vermagic"]) == 0 {
		return nil, fmt.Errorf("%s: no module information found (not a kernel module?)", file)
	}
	return out, nil
}

// Generate writes modules.dep and modules.alias for the module directory
// dir from the modules' own information, as depmod would (every
// dependency, the deepest last). For test roots built from a
// distribution's package, whose maintainer script would run depmod.
func Generate(dir string) error {
	d := &Dir{Path: dir, files: map[string]string{}}
	if err := d.walk(); err != nil {
		return err
	}
	direct := map[string][]string{}
	var aliases []string
	var names []string
	for n, f := range d.files {
		names = append(names, n)
		if !strings.HasSuffix(f, ".ko") {
			continue
		}
		info, err := ModInfo(f)
		if err != nil {
			return err
		}
		for _, v := range info["depends"] {
			for _, dep := range strings.Split(v, ",") {
				if dep != "" {
					direct[n] = append(direct[n], Name(dep))
				}
			}
		}
		for _, a := range info["alias"] {
			aliases = append(aliases, "alias "+a+" "+n)
		}
	}
	sort.Strings(names)
	sort.Strings(aliases)
	var dep strings.Builder
	for _, n := range names {
		// Depth-first order: a dependency comes after everything that
		// needs it, so loading from the end works.
		var order []string
		seen := map[string]bool{}
		var visit func(m string)
		visit = func(m string) {
			for _, x := range direct[m] {
				if !seen[x] {
					seen[x] = true
					visit(x)
					order = append(order, x)
				}
			}
		}
		visit(n)
		rel := func(n string) string { r, _ := filepath.Rel(dir, d.files[n]); return r }
		dep.WriteString(rel(n) + ":")
		for i := len(order) - 1; i >= 0; i-- {
			if d.files[order[i]] == "" {
				return fmt.Errorf("module %s depends on %s, which is not in %s", n, order[i], dir)
			}
			dep.WriteString(" " + rel(order[i]))
		}
		dep.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(strings.Join(aliases, "\n")+"\n"), 0o644)
}

// Closure returns the module files (absolute) needed to load names, each
// after its dependencies, for building an initramfs.
func (d *Dir) Closure(names ...string) ([]string, error) {
	if err := d.index(); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	var visit func(n string) error
	visit = func(n string) error {
		if seen[n] || d.builtin[n] {
			return nil
		}
		seen[n] = true
		file := d.files[n]
		if file == "" {
			return &Error{Module: n, Err: ErrNotFound}
		}
		deps, err := d.depsOf(n, file)
		if err != nil {
			return err
		}
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i]); err != nil {
				return err
			}
		}
		out = append(out, file)
		return nil
	}
	for _, name := range names {
		n, err := d.Resolve(name)
		if err != nil {
			return nil, err
		}
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}
