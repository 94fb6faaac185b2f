package pkgmgr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// events turns lines of output into Events for OnEvent, one at a time.
type events struct {
	mu    sync.Mutex
	parse func(Stream, string) []Event
	on    func(Event)
	ro    *readOnlyWatch
}

func (e *events) line(s Stream, l string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ro != nil && s != StreamStatus {
		e.ro.see(l)
	}
	if e.parse == nil {
		return
	}
	for _, ev := range e.parse(s, l) {
		if e.on != nil {
			e.on(ev)
		}
	}
}

// lines reads r to its end, line by line.
func (e *events) lines(r io.Reader, s Stream) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	for sc.Scan() {
		e.line(s, strings.TrimRight(sc.Text(), "\r"))
	}
}

// lineTap passes output through unchanged (prompts without a newline
// included) and hands complete lines to events.
type lineTap struct {
	w   io.Writer
	s   Stream
	ev  *events
	buf []byte
}

func (t *lineTap) Write(p []byte) (int, error) {
	if t.ev != nil {
		t.buf = append(t.buf, p...)
		for {
			i := bytes.IndexByte(t.buf, '\n')
			if i < 0 {
				break
			}
			t.ev.line(t.s, strings.TrimRight(string(t.buf[:i]), "\r"))
			t.buf = t.buf[i+1:]
		}
		if len(t.buf) > 64*1024 { // no newline for long: not a line
			t.buf = t.buf[:0]
		}
	}
	return t.w.Write(p)
}

func (t *lineTap) flush() {
	if len(t.buf) > 0 && t.ev != nil {
		t.ev.line(t.s, string(t.buf))
		t.buf = nil
	}
}

// The gate: the package manager runs GateHook (apt: a DPkg::Pre-Install-Pkgs
// hook) before it changes anything. The hook writes what it is given
// (apt: VERSION 3 and the package actions), then gateEnd, into the FIFO
// $OVPKG_GATE/ask, and waits for one line on $OVPKG_GATE/answer: "go" lets
// the package manager go on; anything else makes the hook, and with it
// the package manager, fail before dpkg runs. Run holds both FIFOs open
// read-write, so neither side's open blocks and nothing is lost when the
// package manager never comes (nothing to do, or an earlier error).

// EnvGate names the directory of the gate's FIFOs in the package
// manager's environment.
const EnvGate = "OVPKG_GATE"

const gateEnd = "ovpkg-gate-end"

// GateHook is the shell command a package manager runs at the gate, with
// what it hands over on its standard input. Its first word is "true", so
// apt reads its options from DPkg::Tools::Options::true.
const GateHook = `true ovpkg-gate; { cat; echo; echo ` + gateEnd + `; } > "$` + EnvGate + `/ask" && read -r v < "$` + EnvGate + `/answer" && test "$v" = go`

// GateHookOptions is the apt option key prefix of GateHook.
const GateHookOptions = "DPkg::Tools::Options::true"

type gate struct {
	dir         string
	ask, answer *os.File
}

func openGate(parent string) (*gate, error) {
	if parent == "" {
		return nil, errors.New("run: Gate needs GateDir")
	}
	dir, err := os.MkdirTemp(parent, "gate.")
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	g := &gate{dir: dir}
	for _, n := range []string{"ask", "answer"} {
		if err := unix.Mkfifo(filepath.Join(dir, n), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("gate: %w", &os.PathError{Op: "mkfifo", Path: filepath.Join(dir, n), Err: err})
		}
	}
	if g.ask, err = os.OpenFile(filepath.Join(dir, "ask"), os.O_RDWR, 0); err == nil {
		g.answer, err = os.OpenFile(filepath.Join(dir, "answer"), os.O_RDWR, 0)
	}
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("gate: %w", err)
	}
	return g, nil
}

// serve answers every arrival at the gate (apt may pass it more than once
// in one run) with decide's verdict, until the gate is closed.
func (g *gate) serve(decide func(input []string) error) {
	sc := bufio.NewScanner(g.ask)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	var input []string
	for sc.Scan() {
		l := sc.Text()
		if l != gateEnd {
			input = append(input, l)
			continue
		}
		if len(input) > 0 && input[len(input)-1] == "" {
			input = input[:len(input)-1]
		}
		answer := "go\n"
		if err := decide(input); err != nil {
			answer = "stop\n"
		}
		input = nil
		if _, err := g.answer.WriteString(answer); err != nil {
			return
		}
	}
}

func (g *gate) Close() error {
	if g.ask != nil {
		g.ask.Close()
	}
	if g.answer != nil {
		g.answer.Close()
	}
	return os.RemoveAll(g.dir) // FIFOs in a directory of ours on tmpfs
}
