package qemutest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// DefaultBootTimeout bounds one boot (kernel start to power-off) under
// TCG on a loaded machine.
const DefaultBootTimeout = 5 * time.Minute

// Options describe one boot.
type Options struct {
	Kernel  *Kernel
	Initrd  string
	Append  string   // kernel command line (console=ttyS0 and panic=-1 are added)
	Disks   []string // raw images, attached as virtio disks vda, vdb, ...
	Memory  int      // MiB; default 256
	Timeout time.Duration
	Name    string // for the log
}

// VM is a running QEMU.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	mu      sync.Mutex
	cond    *sync.Cond
	out     bytes.Buffer
	pos     int // where the next Wait starts looking
	exited  bool
	waitErr error
	started time.Time
	dead    time.Time
	name    string
}

// Boot starts QEMU. The machine is killed when the test ends; its
// console output is logged if the test failed.
func Boot(t testing.TB, o Options) *VM {
	t.Helper()
	nstest.Need(t, "qemu-system-x86_64")
	if o.Memory == 0 {
		o.Memory = 256
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultBootTimeout
	}
	args := []string{"-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg", "-cpu", "max",
		"-m", fmt.Sprint(o.Memory), "-smp", "1", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", o.Kernel.Vmlinuz, "-append", "console=ttyS0 panic=-1 no_timer_check " + o.Append}
	if o.Initrd != "" {
		args = append(args, "-initrd", o.Initrd)
	}
	for _, d := range o.Disks {
		args = append(args, "-drive", "if=virtio,format=raw,cache=unsafe,file="+d)
	}
	v := &VM{t: t, name: o.Name}
	v.cond = sync.NewCond(&v.mu)
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	v.cmd.Stdin = nil
	// QEMU goes with the test process, even when it is killed.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	w := &vmWriter{v: v}
	v.cmd.Stdout, v.cmd.Stderr = w, w
	v.started = time.Now()
	v.dead = v.started.Add(o.Timeout)
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	go func() {
		err := v.cmd.Wait()
		v.mu.Lock()
		v.exited, v.waitErr = true, err
		v.cond.Broadcast()
		v.mu.Unlock()
	}()
	// Wake waiters at the deadline.
	timer := time.AfterFunc(o.Timeout, func() {
		v.mu.Lock()
		v.cond.Broadcast()
		v.mu.Unlock()
	})
	t.Cleanup(func() {
		timer.Stop()
		v.Kill()
		if t.Failed() {
			v.DumpLog()
		}
	})
	return v
}

type vmWriter struct{ v *VM }

func (w *vmWriter) Write(p []byte) (int, error) {
	w.v.mu.Lock()
	w.v.out.Write(bytes.ReplaceAll(p, []byte("\r"), nil))
	w.v.cond.Broadcast()
	w.v.mu.Unlock()
	return len(p), nil
}

// DumpLog writes the console output to the test log.
func (v *VM) DumpLog() {
	v.mu.Lock()
	s := v.out.String()
	v.mu.Unlock()
	v.t.Logf("console of %s:\n%s", v.name, s)
}

// Output is everything the console printed so far.
func (v *VM) Output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.String()
}

// Wait waits until the console prints a line matching re (after what
// earlier Waits consumed) and returns the line's submatches. It fails the
// test when the machine stops or the boot's time runs out first.
func (v *VM) Wait(re string) []string {
	v.t.Helper()
	m, err := v.wait(regexp.MustCompile(re))
	if err != nil {
		v.t.Fatalf("%s: waiting for %q: %v", v.name, re, err)
	}
	return m
}

// Expect is Wait returning the error instead of failing.
func (v *VM) Expect(re string) ([]string, error) { return v.wait(regexp.MustCompile(re)) }

func (v *VM) wait(re *regexp.Regexp) ([]string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		buf := v.out.Bytes()[v.pos:]
		// Only whole lines.
		if end := bytes.LastIndexByte(buf, '\n'); end >= 0 {
			lines := buf[:end+1]
			if loc := re.FindSubmatchIndex(lines); loc != nil {
				// Consume through the end of the matching line.
				nl := bytes.IndexByte(lines[loc[1]:], '\n')
				sub := re.FindSubmatch(lines)
				v.pos += loc[1] + nl + 1
				out := make([]string, len(sub))
				for i, s := range sub {
					out[i] = string(s)
				}
				return out, nil
			}
		}
		if v.exited {
			return nil, fmt.Errorf("the machine stopped (%v) after %v", v.waitErr, time.Since(v.started).Round(time.Millisecond))
		}
		if !time.Now().Before(v.dead) {
			return nil, fmt.Errorf("boot timeout after %v", time.Since(v.started).Round(time.Millisecond))
		}
		v.cond.Wait()
	}
}

// WaitExit waits for QEMU to exit (the guest powered off or halted with
// -no-reboot) and returns how long the machine ran.
func (v *VM) WaitExit() time.Duration {
	v.t.Helper()
	v.mu.Lock()
	for !v.exited && time.Now().Before(v.dead) {
		v.cond.Wait()
	}
	exited := v.exited
	v.mu.Unlock()
	if !exited {
		v.t.Fatalf("%s: still running after its boot timeout", v.name)
	}
	return time.Since(v.started)
}

// Kill stops QEMU if it still runs and waits for it.
func (v *VM) Kill() {
	v.mu.Lock()
	exited := v.exited
	v.mu.Unlock()
	if !exited && v.cmd.Process != nil {
		v.cmd.Process.Kill()
		v.mu.Lock()
		for !v.exited {
			v.cond.Wait()
		}
		v.mu.Unlock()
	}
}

// Elapsed is the time since QEMU started.
func (v *VM) Elapsed() time.Duration { return time.Since(v.started) }

// Panicked reports whether the kernel panicked (e.g. init exited).
func (v *VM) Panicked() bool { return strings.Contains(v.Output(), "Kernel panic") }

// WriteLog saves the console output to dir/name.log (for benchmarks).
func (v *VM) WriteLog(dir string) error {
	return os.WriteFile(filepath.Join(dir, v.name+".log"), []byte(v.Output()), 0o644)
}
