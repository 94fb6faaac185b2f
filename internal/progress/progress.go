// Package progress prints what a long command is doing: phase lines
// ("ovpkg: downloading 180 MB into /overlay/ovpkg/cache/archives") and,
// within a phase, progress. On a terminal the progress is one status line
// with a bar, redrawn in place at most ten times a second, with any other
// output (the package manager's own) scrolling above it. Elsewhere (a
// pipe, a log) it prints plain lines: one when a phase starts, and while
// it runs one at least every Heartbeat when nothing else was printed, so
// no phase is silent for longer, and never more than one per Heartbeat.
//
// It owns only the presentation; callers say what the phases are. It is
// safe for concurrent use. It does not read input.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Heartbeat is the longest a running phase stays silent.
const Heartbeat = 2 * time.Second

// redraw is the shortest time between two redraws of the status line.
const redraw = 100 * time.Millisecond

// Printer prints phases and progress to one writer.
type Printer struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	width   int
	prefix  string
	now     func() time.Time
	phase   string // running phase ("" when none)
	started time.Time
	pct     float64 // <0: unknown
	detail  string
	drawn   bool      // the status line is on the screen (tty)
	partial bool      // other output left a line unfinished
	partW   io.Writer // where (p.w or a wrapped writer)
	lastOut time.Time // last time anything was printed
	lastBar time.Time
	stop    chan struct{}
	done    chan struct{}
}

// New returns a Printer writing to w; messages start with prefix
// ("ovpkg: "). It draws a bar when w is a terminal.
func New(w io.Writer, prefix string) *Printer {
	tty, width := Terminal(w)
	return newPrinter(w, prefix, tty, width, time.Now)
}

// NewPlain is New that never draws a bar (tests, --quiet callers).
func NewPlain(w io.Writer, prefix string) *Printer {
	return newPrinter(w, prefix, false, 0, time.Now)
}

func newPrinter(w io.Writer, prefix string, tty bool, width int, now func() time.Time) *Printer {
	if width <= 0 {
		width = 80
	}
	p := &Printer{w: w, tty: tty, width: width, prefix: prefix, now: now, pct: -1,
		stop: make(chan struct{}), done: make(chan struct{})}
	p.lastOut = now()
	go p.tick()
	return p
}

// Terminal reports whether w is a terminal, and its width.
func Terminal(w io.Writer) (bool, int) {
	f, ok := w.(*os.File)
	if !ok {
		return false, 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return false, 0
	}
	return true, int(ws.Col)
}

// IsTerminal reports whether f is a terminal (for input: may a question
// be asked?).
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// TTY reports whether the printer draws a bar.
func (p *Printer) TTY() bool { return p.tty }

// Say prints one message line.
func (p *Printer) Say(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.endPartial()
	fmt.Fprintf(p.w, p.prefix+format+"\n", a...)
	p.lastOut = p.now()
	p.draw(true)
}

// Phase starts a phase: prints its line and shows progress for it from
// now on (name is the short form the status line uses: "downloading").
func (p *Printer) Phase(name, format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.endPartial()
	fmt.Fprintf(p.w, p.prefix+format+"\n", a...)
	p.phase, p.pct, p.detail = name, -1, ""
	p.started = p.now()
	p.lastOut = p.started
	p.draw(true)
}

// Progress updates the running phase: pct from 0 to 100 (negative when
// unknown) and what it is doing now.
func (p *Printer) Progress(pct float64, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pct > 100 {
		pct = 100
	}
	p.pct, p.detail = pct, detail
	p.draw(false)
}

// Done ends the running phase (its status line is cleared).
func (p *Printer) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.phase = ""
}

// Write passes other output through (the package manager's), keeping the
// status line below it.
func (p *Printer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(b) == 0 {
		return 0, nil
	}
	p.clear()
	n, err := p.w.Write(b)
	p.partial, p.partW = b[len(b)-1] != '\n', p.w
	p.lastOut = p.now()
	p.draw(true)
	return n, err
}

// Wrap returns a writer for other output that goes to w (the terminal's
// other stream, say): the status line is cleared before and redrawn
// after it, as for Write.
func (p *Printer) Wrap(w io.Writer) io.Writer { return &wrapped{p: p, w: w} }

type wrapped struct {
	p *Printer
	w io.Writer
}

func (x *wrapped) Write(b []byte) (int, error) {
	p := x.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(b) == 0 {
		return 0, nil
	}
	p.clear()
	n, err := x.w.Write(b)
	p.partial, p.partW = b[len(b)-1] != '\n', x.w
	p.lastOut = p.now()
	p.draw(true)
	return n, err
}

// Close stops the printer (the status line is cleared).
func (p *Printer) Close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	p.Done()
}

func (p *Printer) tick() {
	defer close(p.done)
	t := time.NewTicker(redraw)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.heartbeat()
			p.mu.Unlock()
		}
	}
}

// heartbeat keeps a running phase from going silent: on a terminal the
// status line's clock moves; elsewhere a plain progress line.
func (p *Printer) heartbeat() {
	if p.phase == "" {
		return
	}
	if p.tty {
		p.draw(false)
		return
	}
	// One tick early: the ticker's period is the most a line can be late.
	if p.now().Sub(p.lastOut) >= Heartbeat-redraw {
		p.endPartial()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.status(false))
		p.lastOut = p.now()
	}
}

// status is the phase's progress as text: "downloading 45% (Retrieving
// file 3 of 26), 12 s"; with bar, a bar of the terminal's width.
func (p *Printer) status(bar bool) string {
	var b strings.Builder
	b.WriteString(p.phase)
	if bar {
		b.WriteString(" ")
		b.WriteString(Bar(p.pct, 24))
	}
	if p.pct >= 0 {
		fmt.Fprintf(&b, " %3.0f%%", p.pct)
	}
	if p.detail != "" {
		b.WriteString(" " + p.detail)
	}
	if s := p.now().Sub(p.started); s >= Heartbeat {
		fmt.Fprintf(&b, " (%s)", s.Round(time.Second))
	}
	return b.String()
}

// Bar draws pct (negative: unknown) as "[=====>      ]" of width cells.
func Bar(pct float64, width int) string {
	if width < 3 {
		width = 3
	}
	in := width - 2
	if pct < 0 {
		return "[" + strings.Repeat("?", in) + "]"
	}
	full := int(pct / 100 * float64(in))
	if full > in {
		full = in
	}
	s := strings.Repeat("=", full)
	if full < in {
		s += ">" + strings.Repeat(" ", in-full-1)
	}
	return "[" + s + "]"
}

// draw puts the status line on a terminal (now: regardless of the last
// redraw).
func (p *Printer) draw(now bool) {
	if !p.tty || p.phase == "" || p.partial {
		return
	}
	if !now && p.drawn && p.now().Sub(p.lastBar) < redraw {
		return
	}
	line := p.prefix + p.status(true)
	if r := []rune(line); len(r) > p.width-1 {
		line = string(r[:p.width-1])
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.drawn = true
	p.lastBar = p.now()
}

// endPartial ends a line other output left unfinished ("Reading package
// lists..."), so that our own line starts a line of its own.
func (p *Printer) endPartial() {
	if p.partial {
		fmt.Fprint(p.partW, "\n")
		p.partial = false
	}
}

func (p *Printer) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}
