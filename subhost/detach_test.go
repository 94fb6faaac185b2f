package subhost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDetachHelper is the supervisor stand-in Detach starts: it says why
// it fails on $NOTIFY_SOCKET and exits at once, as `start --foreground`
// does when check finds problems.
func TestDetachHelper(t *testing.T) {
	if os.Getenv("OVPKG_DETACH_HELPER") == "" {
		return
	}
	Notify("STATUS=1 problem(s), nothing was started: the reason")
	os.Exit(1)
}

// Detach reports what the supervisor said before it exited, however the
// exit and the message race (it said "the supervisor ended (exit status
// 1)" instead, now and then, on a loaded machine).
func TestDetachStatusBeforeExit(t *testing.T) {
	t.Setenv("OVPKG_DETACH_HELPER", "1")
	log := filepath.Join(t.TempDir(), "log")
	for i := 0; i < 60; i++ {
		_, err := Detach(os.Args[0], []string{os.Args[0], "-test.run=^TestDetachHelper$"}, log, time.Minute)
		if err == nil || err.Error() != "1 problem(s), nothing was started: the reason" {
			b, _ := os.ReadFile(log)
			t.Fatalf("run %d: %v (log: %s)", i, err, strings.TrimSpace(string(b)))
		}
	}
}
