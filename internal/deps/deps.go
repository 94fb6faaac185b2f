// Package deps pins the module's planned dependencies in go.mod while the
// packages that use them are being written. Nothing imports it; it goes
// away once every dependency has a real user.
package deps

import (
	_ "github.com/diskfs/go-diskfs/partition/gpt"
	_ "github.com/diskfs/go-diskfs/partition/mbr"
	_ "github.com/moby/sys/mountinfo"
	_ "golang.org/x/sys/unix"
)
