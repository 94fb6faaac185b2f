// Package units formats byte counts the way every ovpkg command prints
// them: binary units with one decimal ("1.5 MiB", "512 B"). It owns
// nothing else (no parsing: sizes on the command line are mkoverlay's,
// image.ParseSize).
package units

import "fmt"

// Bytes prints n bytes as "1.5 MiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
