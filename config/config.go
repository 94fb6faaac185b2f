package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/internal/trustpath"
)

// DefaultPath is where the seed tools keep their configuration.
const DefaultPath = "/etc/ovpkg.conf"

// EnvVar names the environment variable that overrides DefaultPath.
const EnvVar = "OVPKG_CONFIG"

// Keys ovpkg understands. Any other line in the file is kept verbatim.
const (
	KeyImage       = "SD_ROOTFS"    // absolute path of the card image
	KeyUUID        = "SD_UUID"      // filesystem UUID mkoverlay gave the card
	KeyMountPoint  = "MOUNTPOINT"   // where the card is mounted (default /overlay)
	KeyOverlayDirs = "OVERLAY_DIRS" // space-separated root directories to overlay
	KeyRunDir      = "RUN_DIR"      // where mount records and the lock live (default /run/ovpkg)
	// KeyArchiveDir is where package verbs download archives: a
	// directory outside every layer (default: ovpkg/cache/archives on
	// the card); may be a host directory.
	KeyArchiveDir = "ARCHIVE_DIR"
	// KeyKeepArchives: "yes" keeps what a verb downloaded (apt's
	// habit), "no" (default) deletes it after the verb.
	KeyKeepArchives = "KEEP_ARCHIVES"
	// KeyTrustDir is the host directory (root-only, never on the card)
	// holding the key and the memory of the cards this host ejected
	// cleanly (default /var/lib/ovpkg; see the trust package).
	KeyTrustDir = "TRUST_DIR"
)

// YesNo reads a yes|no key (also true/false, 1/0, on/off, any case);
// unset or empty is def.
func (f *File) YesNo(key string, def bool) (bool, error) {
	v, ok := f.Get(key)
	v = strings.ToLower(strings.TrimSpace(v))
	if !ok || v == "" {
		return def, nil
	}
	switch v {
	case "yes", "y", "true", "1", "on":
		return true, nil
	case "no", "n", "false", "0", "off":
		return false, nil
	}
	return def, &Error{Path: f.Path, Line: f.line(key), Msg: fmt.Sprintf("%s=%s is neither yes nor no", key, v)}
}

// AbsPath reads a key holding an absolute path; unset or empty is "".
// A relative path is an error naming the key.
func (f *File) AbsPath(key string) (string, error) {
	v, _ := f.Get(key)
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if !strings.HasPrefix(v, "/") {
		return "", &Error{Path: f.Path, Line: f.line(key), Msg: fmt.Sprintf("%s=%s is not an absolute path", key, v)}
	}
	return filepath.Clean(v), nil
}

// line is the line number of the assignment Get reads (0 if none).
func (f *File) line(key string) int {
	for i := len(f.lines) - 1; i >= 0; i-- {
		if f.lines[i].key == key {
			return i + 1
		}
	}
	return 0
}

// Resolve returns the configuration path to use: the flag if set, else
// $OVPKG_CONFIG, else DefaultPath.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvVar); env != "" {
		return env
	}
	return DefaultPath
}

// line is one line of the file; key is empty for comments, blanks and
// anything that is not a KEY=VALUE assignment.
type line struct {
	raw   string
	key   string
	value string
}

// File is a parsed configuration file.
type File struct {
	Path  string
	lines []line
}

// Error describes a configuration problem with the file it concerns.
type Error struct {
	Path string
	Line int // 0 when not about one line
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	loc := e.Path
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.Path, e.Line)
	}
	s := "config " + loc + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// MaxSize bounds the configuration file (a few hundred bytes in use).
const MaxSize = 1 << 20

// Load reads path after checking that nobody but root could have written
// it (see CheckTrusted): every verb reads its config through Load, so no
// verb acts on a file a user could have planted or edited. A missing file
// (in trusted directories) is returned as an empty File together with an
// error that satisfies errors.Is(err, fs.ErrNotExist), so that writers
// (mkoverlay) can go on and readers use the defaults. The file is opened
// with O_NOFOLLOW and checked on the open descriptor, so nothing can be
// swapped in between the check and the read.
func Load(path string) (*File, error) {
	f := &File{Path: path}
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return f, &Error{Path: path, Msg: "cannot resolve the path", Err: err}
		}
		path, f.Path = abs, abs
	}
	data, err := trustpath.ReadFile(path, MaxSize)
	if err != nil {
		return f, trustError(path, err)
	}
	if err := f.parse(bytes.NewReader(data)); err != nil {
		return f, err
	}
	return f, nil
}

// trustError turns a trustpath refusal into a config Error that says
// what to do.
func trustError(path string, err error) error {
	var te *trustpath.Error
	if !errors.As(err, &te) {
		return &Error{Path: path, Msg: "cannot read", Err: err}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &Error{Path: path, Msg: "cannot read (run mkoverlay first, or name the file with --config)", Err: te.Err}
	}
	if te.At == path || te.At == "" {
		msg := te.Msg
		if strings.Contains(msg, "symbolic link") {
			msg = "is a symbolic link; ovpkg trusts only a regular root-owned file (replace the link with the file itself)"
		}
		if te.Err == trustpath.ErrUntrusted {
			return &Error{Path: path, Msg: msg, Err: ErrUntrusted}
		}
		return &Error{Path: path, Msg: msg, Err: te.Err}
	}
	if te.Err == trustpath.ErrUntrusted {
		return &Error{Path: path, Msg: te.Error(), Err: ErrUntrusted}
	}
	return &Error{Path: path, Msg: "cannot read", Err: err}
}

// ErrUntrusted is wrapped by every refusal of a config someone other than
// root could have written.
var ErrUntrusted = errors.New("not trusted")

// Parse reads a configuration from r; path is used in messages only.
func Parse(path string, r io.Reader) (*File, error) {
	f := &File{Path: path}
	return f, f.parse(r)
}

func (f *File) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		l := line{raw: raw}
		t := strings.TrimSpace(raw)
		t = strings.TrimPrefix(t, "export ")
		if t != "" && !strings.HasPrefix(t, "#") {
			k, v, ok := strings.Cut(t, "=")
			if ok && validKey(k) {
				val, err := unquote(v)
				if err != nil {
					return &Error{Path: f.Path, Line: n, Msg: err.Error()}
				}
				l.key, l.value = k, val
			}
		}
		f.lines = append(f.lines, l)
	}
	if err := sc.Err(); err != nil {
		return &Error{Path: f.Path, Msg: "cannot read", Err: err}
	}
	return nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		switch {
		case c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'):
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// unquote undoes the quoting quote() writes and the plain shell forms a
// person writes by hand: bare words, '...' and "..." (with \" \\ \$ \`).
func unquote(v string) (string, error) {
	v = strings.TrimSpace(v)
	var b strings.Builder
	for i := 0; i < len(v); {
		c := v[i]
		switch c {
		case '\'':
			j := strings.IndexByte(v[i+1:], '\'')
			if j < 0 {
				return "", errors.New("unterminated ' quote")
			}
			b.WriteString(v[i+1 : i+1+j])
			i += j + 2
		case '"':
			i++
			closed := false
			for i < len(v) {
				if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
					b.WriteByte(v[i+1])
					i += 2
					continue
				}
				if v[i] == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(v[i])
				i++
			}
			if !closed {
				return "", errors.New(`unterminated " quote`)
			}
		case '#':
			if i > 0 && (v[i-1] == ' ' || v[i-1] == '\t') {
				return strings.TrimSpace(b.String()), nil
			}
			b.WriteByte(c)
			i++
		case '\\':
			if i+1 < len(v) {
				b.WriteByte(v[i+1])
				i += 2
			} else {
				i++
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// quote renders a value so that both this package and sh read it back.
func quote(v string) string {
	if v == "" {
		return "''"
	}
	safe := true
	for _, c := range v {
		if !(c == '/' || c == '.' || c == '-' || c == '_' || c == ':' || c == '+' || c == ',' || c == '@' || c == '%' ||
			(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			safe = false
			break
		}
	}
	if safe {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// Get returns the last value assigned to key, as sh would.
func (f *File) Get(key string) (string, bool) {
	for i := len(f.lines) - 1; i >= 0; i-- {
		if f.lines[i].key == key {
			return f.lines[i].value, true
		}
	}
	return "", false
}

// Keys returns the keys the file assigns, each once, in order of their
// first assignment.
func (f *File) Keys() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range f.lines {
		if l.key != "" && !seen[l.key] {
			seen[l.key] = true
			out = append(out, l.key)
		}
	}
	return out
}

// Set assigns key in place (the last assignment is rewritten, earlier ones
// dropped) or appends it.
func (f *File) Set(key, value string) {
	raw := key + "=" + quote(value)
	last := -1
	for i := range f.lines {
		if f.lines[i].key == key {
			last = i
		}
	}
	if last < 0 {
		f.lines = append(f.lines, line{raw: raw, key: key, value: value})
		return
	}
	out := f.lines[:0:0]
	for i, l := range f.lines {
		if l.key == key && i != last {
			continue
		}
		if i == last {
			l = line{raw: raw, key: key, value: value}
		}
		out = append(out, l)
	}
	f.lines = out
}

// Bytes renders the file.
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Save writes the file atomically: a temporary file beside it, fsync,
// rename over the old one, fsync of the directory. The mode of an existing
// file is kept; a new one gets 0644. A symlink at Path is refused rather
// than replaced.
func (f *File) Save() error {
	mode := os.FileMode(0o644)
	if _, err := trustpath.Dir(filepath.Dir(f.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return trustError(f.Path, err)
	}
	if st, err := os.Lstat(f.Path); err == nil {
		if st.Mode()&os.ModeSymlink != 0 {
			return &Error{Path: f.Path, Msg: "is a symbolic link; refusing to replace it (point --config at the real file)"}
		}
		if !st.Mode().IsRegular() {
			return &Error{Path: f.Path, Msg: "is not a regular file"}
		}
		mode = st.Mode().Perm()
	}
	if err := atomicfile.Write(f.Path, f.Bytes(), mode); err != nil {
		return &Error{Path: f.Path, Msg: "cannot write (check the directory exists and is writable)", Err: err}
	}
	return nil
}

// CheckTrusted refuses a file that someone other than root could have
// written: it must be a regular file (not a symlink), owned by uid 0 (or
// the user running the command), and not writable by group or others, in
// directories (from / down) that only root can change (owned by root,
// not group/world-writable unless sticky; symbolic links on the way owned
// by root). Load does the same checks on the descriptor it reads.
func CheckTrusted(path string) error {
	f, err := trustpath.Open(path, os.O_RDONLY, 0)
	if err != nil {
		return trustError(path, err)
	}
	return f.Close()
}
