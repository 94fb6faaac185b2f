package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Not on a terminal: plain lines; a running phase is never silent for
// more than Heartbeat; no control characters.
func TestPlainHeartbeat(t *testing.T) {
	var out syncBuf
	c := &clock{t: time.Unix(1000, 0)}
	p := newPrinter(&out, "ovpkg: ", false, 0, c.now)
	defer p.Close()
	p.Phase("downloading", "downloading 180 MB into /x")
	p.Progress(45, "Retrieving file 3 of 26")
	c.add(Heartbeat + time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "downloading  45% Retrieving file 3 of 26 (3s)") {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat line: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Write([]byte("Get:1 http://x sl\n"))
	p.Done()
	s := out.String()
	if strings.ContainsAny(s, "\r\x1b") {
		t.Errorf("control characters off a terminal: %q", s)
	}
	if !strings.HasPrefix(s, "ovpkg: downloading 180 MB into /x\n") {
		t.Errorf("phase line: %q", s)
	}
}

// On a terminal: the status line is cleared before other output and
// redrawn after it.
func TestTerminalBar(t *testing.T) {
	var out syncBuf
	c := &clock{t: time.Unix(1000, 0)}
	p := newPrinter(&out, "ovpkg: ", true, 60, c.now)
	p.Phase("installing", "installing 2 packages")
	p.Progress(50, "Unpacking sl")
	p.Write([]byte("Setting up sl\n"))
	p.Close()
	s := out.String()
	// Redrawn after the other output (the first update came too soon
	// after the phase's first draw), cut to the terminal's width.
	if !strings.Contains(s, "\r\x1b[Kovpkg: installing [===========>          ]  50% Unpacking s\r") {
		t.Errorf("bar: %q", s)
	}
	if !strings.Contains(s, "\r\x1b[KSetting up sl\n") {
		t.Errorf("output not below a cleared line: %q", s)
	}
	for _, l := range strings.Split(s, "\r") {
		if len([]rune(strings.TrimPrefix(l, "\x1b[K"))) > 60 {
			t.Errorf("line wider than the terminal: %q", l)
		}
	}
}

func TestBar(t *testing.T) {
	for pct, want := range map[float64]string{0: "[>   ]", 50: "[==> ]", 100: "[====]", -1: "[????]"} {
		if got := Bar(pct, 6); got != want {
			t.Errorf("Bar(%v) = %q, want %q", pct, got, want)
		}
	}
}

// Output that left its line unfinished (apt's "Reading package lists...")
// does not get our lines glued to it: a heartbeat, a message or a phase
// starts a line of its own.
func TestOwnLinesAfterPartialOutput(t *testing.T) {
	var out syncBuf
	c := &clock{t: time.Unix(1000, 0)}
	p := newPrinter(&out, "ovpkg: ", false, 0, c.now)
	defer p.Close()
	p.Phase("running", "running apt-get install -y sl")
	p.Write([]byte("Reading package lists..."))
	c.add(Heartbeat + time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "ovpkg: running (3s)") {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat line: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Write([]byte("Building dependency tree..."))
	p.Say("a message")
	p.Write([]byte("Reading state information..."))
	p.Phase("checking", "checking the archives")
	s := out.String()
	for _, want := range []string{"Reading package lists...\novpkg: running (3s)\n", "Building dependency tree...\novpkg: a message\n",
		"Reading state information...\novpkg: checking the archives\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %q: %q", want, s)
		}
	}
}
