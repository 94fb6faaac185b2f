//go:build ovpkg_testhooks

package app

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// With OVPKG_TEST_REPORT_RSS set, the package verbs print ovpkg's own
// peak RSS (VmHWM of this process, not of the package manager it ran)
// for the benchmarks. Test builds only.
func init() {
	reportRSS = func(w io.Writer) {
		if os.Getenv("OVPKG_TEST_REPORT_RSS") == "" {
			return
		}
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				fmt.Fprintf(w, "ovpkg-vmhwm-kb: %s\n", strings.Fields(l)[1])
			}
		}
	}
}
