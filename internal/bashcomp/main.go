// Command bashcomp writes the bash completion script for the suite's tool
// names (ovpkg and its verbs, mkoverlay, ovmount, uovmount, overlay-boot...), generated
// from the command tree itself (app.New: commands, aliases, subcommands,
// visible flags and whether they take a value), so it cannot drift from
// the binary. It lives outside the product binary, like internal/mangen:
// `make completion` runs it, the packages and `make install` ship its
// output.
//
// Usage: go run ./internal/bashcomp [FILE]   (default: standard output)
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ovpkg/ovpkg/app"
	"github.com/ovpkg/ovpkg/internal/cli"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

// completed are the tool names completed: every name of the binary
// (app.Names) but eject, which is left to the system's eject where there
// is one (`ovpkg eject` is completed).
func completed() []string {
	var out []string
	for _, n := range app.Names() {
		if n != "eject" {
			out = append(out, n)
		}
	}
	return out
}

// valueCompletion says how the value of a flag is completed, by flag
// name; flags taking a value not listed here complete nothing.
func valueCompletion() map[string]string {
	return map[string]string{
		"config": `_ovpkg_files`,
		"root":   `_ovpkg_dirs`,
		"to":     `_ovpkg_files`,
		"pm":     `_ovpkg_words "` + strings.Join(pkgmgr.Names(), " ") + `"`,
		"fs":     `_ovpkg_words "ext2 ext4"`,
	}
}

// argCompletion says how the arguments of a command path complete.
var argCompletion = map[string]string{
	"ovpkg install":   `_ovpkg_pkgfiles`,
	"ovpkg remove":    `_ovpkg_cardpkgs`,
	"ovpkg files":     `_ovpkg_cardpkgs`,
	"ovpkg upgrade":   `_ovpkg_cardpkgs`,
	"ovpkg mkoverlay": `_ovpkg_files`,
	"mkoverlay":       `_ovpkg_files`,
}

// node is one command path's completion data.
type node struct {
	path     string   // "ovpkg install"
	subs     []string // subcommand names and aliases
	flags    []string // every visible flag name, "--long" and "-s"
	valued   []string // flags that take a value
	complete map[string]string
}

func walk(path string, flags []cli.Flag, subs []*cli.Command, out *[]node) {
	n := node{path: path, complete: map[string]string{}}
	vc := valueCompletion()
	for _, f := range flags {
		if !f.IsVisible() {
			continue
		}
		for _, name := range f.Names() {
			dash := "--"
			if len(name) == 1 {
				dash = "-"
			}
			n.flags = append(n.flags, dash+name)
			if f.TakesValue() {
				n.valued = append(n.valued, dash+name)
				if c, ok := vc[f.Names()[0]]; ok {
					n.complete[dash+name] = c
				}
			}
		}
	}
	n.flags = append(n.flags, "--help")
	for _, c := range subs {
		if c.Hidden {
			continue
		}
		n.subs = append(n.subs, c.Names()...)
	}
	*out = append(*out, n)
	for _, c := range subs {
		if c.Hidden {
			continue
		}
		for _, name := range c.Names() {
			walk(path+" "+name, c.Flags, c.Subcommands, out)
		}
	}
}

func main() {
	var w io.Writer = os.Stdout
	if len(os.Args) > 1 {
		if err := os.MkdirAll(filepath.Dir(os.Args[1]), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bashcomp:", err)
			os.Exit(1)
		}
		f, err := os.Create(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "bashcomp:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	if err := write(w, tree()); err != nil {
		fmt.Fprintln(os.Stderr, "bashcomp:", err)
		os.Exit(1)
	}
}

// tree is the completion data of every completed tool.
func tree() []node {
	var nodes []node
	for _, name := range completed() {
		a := app.New(name, io.Discard, io.Discard)
		walk(name, a.Flags, a.Commands, &nodes)
		for i := range nodes {
			if nodes[i].path == name {
				nodes[i].flags = append(nodes[i].flags, "--version")
			}
		}
	}
	return nodes
}

func words(s []string) string {
	s = append([]string{}, s...)
	sort.Strings(s)
	return strings.Join(s, " ")
}

func write(w io.Writer, nodes []node) error {
	var b strings.Builder
	b.WriteString(header)
	// _ovpkg_node PATH: sets subs, flags, valued for a command path.
	b.WriteString("_ovpkg_node() {\n\tsubs= flags= valued=\n\tcase $1 in\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "\t%q) subs=%q flags=%q valued=%q ;;\n", n.path, words(n.subs), words(n.flags), words(n.valued))
	}
	b.WriteString("\tesac\n}\n\n")
	// _ovpkg_value PATH FLAG CUR: completes a flag's value.
	b.WriteString("_ovpkg_value() {\n\tcase \"$1 $2\" in\n")
	for _, n := range nodes {
		keys := make([]string, 0, len(n.complete))
		for k := range n.complete {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "\t%q) %s \"$3\" ;;\n", n.path+" "+k, n.complete[k])
		}
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString("_ovpkg_args() {\n\tcase $1 in\n")
	paths := make([]string, 0, len(argCompletion))
	for p := range argCompletion {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(&b, "\t%q) %s \"$2\" ;;\n", p, argCompletion[p])
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString(body)
	fmt.Fprintf(&b, "complete -F _ovpkg %s\n", strings.Join(completed(), " "))
	_, err := io.WriteString(w, b.String())
	return err
}

const header = `# bash completion for ovpkg and the other names of its binary.
# Generated by internal/bashcomp from the command tree; do not edit.

_ovpkg_words() { COMPREPLY=($(compgen -W "$1" -- "$2")); }
_ovpkg_files() { compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$1")); }
_ovpkg_dirs() { compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$1")); }
# Package files (.deb .ipk .apk) and directories; names need the archive.
_ovpkg_pkgfiles() {
	compopt -o filenames 2>/dev/null
	local IFS=$'\n'
	local ext=$(shopt -p extglob)
	shopt -s extglob
	COMPREPLY=($(compgen -d -- "$1") $(compgen -f -X '!*.@(deb|ipk|apk)' -- "$1"))
	eval "$ext"
	if [[ $1 != */* ]] && command -v apt-cache >/dev/null 2>&1; then
		COMPREPLY+=($(apt-cache --no-generate pkgnames -- "$1" 2>/dev/null | head -n 200))
	fi
}
# Packages on the card (ovpkg list, first column).
_ovpkg_cardpkgs() {
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$(ovpkg list 2>/dev/null | awk 'NR > 1 { print $1 }')" -- "$1"))
}

`

const body = `_ovpkg() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	(( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
	local path=${COMP_WORDS[0]##*/} subs flags valued i w skip=
	_ovpkg_node "$path"
	# Walk the words before the cursor: descend into subcommands, skip
	# flags and the values of flags that take one.
	for (( i = 1; i < COMP_CWORD; i++ )); do
		w=${COMP_WORDS[i]}
		if [[ -n $skip ]]; then skip=; continue; fi
		[[ $w == -- ]] && break
		if [[ $w == -* ]]; then
			[[ $w != *=* && " $valued " == *" $w "* ]] && skip=1
			continue
		fi
		if [[ " $subs " == *" $w "* ]]; then
			path="$path $w"
			_ovpkg_node "$path"
		fi
	done
	COMPREPLY=()
	# --flag=value: bash splits it into "--flag" "=" "value".
	if [[ $cur == = ]]; then
		_ovpkg_value "$path" "$prev" ""
		return 0
	fi
	if [[ $prev == = ]] && (( COMP_CWORD >= 2 )); then
		_ovpkg_value "$path" "${COMP_WORDS[COMP_CWORD-2]}" "$cur"
		return 0
	fi
	if [[ -n $skip && $prev == -* ]]; then
		_ovpkg_value "$path" "$prev" "$cur"
		return 0
	fi
	if [[ $cur == --*=* ]]; then
		local f=${cur%%=*}
		_ovpkg_value "$path" "$f" "${cur#*=}"
		return 0
	fi
	if [[ $cur == -* ]]; then
		_ovpkg_words "$flags" "$cur"
		return 0
	fi
	if [[ -n $subs ]]; then
		_ovpkg_words "$subs" "$cur"
		return 0
	fi
	_ovpkg_args "$path" "$cur"
	return 0
}
`
