package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/app"
	"github.com/ovpkg/ovpkg/internal/cli"
	"github.com/ovpkg/ovpkg/internal/nstest"
)

func script(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b, tree()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ovpkg.bash")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// complete runs the completion function in a real bash for the command
// line words (the last one is the word being completed) and returns
// COMPREPLY, one entry per line.
func complete(t *testing.T, file, dir string, words ...string) []string {
	t.Helper()
	var q []string
	for _, w := range words {
		q = append(q, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
	}
	prog := `source "$1" || exit 9
COMP_WORDS=(` + strings.Join(q, " ") + `)
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
_ovpkg
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog, "bash", file)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH=/nonexistent") // no ovpkg or apt-cache to call
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got
}

func TestCompletion(t *testing.T) {
	nstest.Need(t, "bash")
	file := script(t)
	if out, err := exec.Command("bash", "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	dir := t.TempDir()
	for _, f := range []string{"hello_1.0_all.deb", "x_1_all.ipk", "y-1.0-r1.apk", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	cases := []struct {
		words []string
		want  string
	}{
		{[]string{"ovpkg", "ins"}, "install"},
		{[]string{"ovpkg", "e"}, "eject"},
		{[]string{"ovpkg", "--"}, "--help --version"},
		{[]string{"ovpkg", "install", "--p"}, "--pm"},
		{[]string{"ovpkg", "install", "--pm", ""}, "apk apt opkg"},
		{[]string{"ovpkg", "install", "--pm", "a"}, "apk apt"},
		{[]string{"ovpkg", "--root", "/", "install", "--y"}, "--yes"},
		{[]string{"ovpkg", "install", "--root", "s"}, "sub"},
		{[]string{"ovpkg", "install", ""}, "hello_1.0_all.deb sub x_1_all.ipk y-1.0-r1.apk"},
		{[]string{"ovpkg", "install", "--yes", "y"}, "y-1.0-r1.apk"},
		{[]string{"ovpkg", "install", "--config", "n"}, "notes.txt"},
		{[]string{"ovpkg", "install", "--config", "=", "n"}, "notes.txt"},
		{[]string{"ovpkg", "mkoverlay", "--fs", ""}, "ext2 ext4"},
		{[]string{"ovmount", "--b"}, "--boot"},
		{[]string{"ovpkg", "ovmount", "--b"}, "--boot"},
		{[]string{"mkoverlay", "--g"}, "--gpt"},
		{[]string{"uovmount", "--j"}, "--json"},
		{[]string{"ovpkg", "rollback", "--"}, "--config --help --json --root"},
		{[]string{"ovpkg", "__"}, ""}, // hidden verbs stay hidden
	}
	for _, c := range cases {
		reply := complete(t, file, dir, c.words...)
		sort.Strings(reply)
		got := strings.Join(reply, " ")
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.words, got, c.want)
		}
	}
}

// Every visible verb and flag of the binary is in the script, so it
// cannot fall behind the command tree.
func TestCompletionCoversTree(t *testing.T) {
	b, err := os.ReadFile(script(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	a := app.New("ovpkg", io.Discard, io.Discard)
	var check func(path string, cmds []*cli.Command)
	check = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden {
				if strings.Contains(s, `"`+path+" "+c.Name+`"`) {
					t.Errorf("hidden %s %s is completed", path, c.Name)
				}
				continue
			}
			p := path + " " + c.Name
			if !strings.Contains(s, `"`+p+`")`) {
				t.Errorf("%s missing", p)
			}
			for _, f := range c.Flags {
				if f.IsVisible() && !strings.Contains(s, "--"+f.Names()[0]) {
					t.Errorf("%s --%s missing", p, f.Names()[0])
				}
			}
			check(p, c.Subcommands)
		}
	}
	check("ovpkg", a.Commands)
}
