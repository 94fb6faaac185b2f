module github.com/ovpkg/ovpkg

go 1.26.8

require (
	github.com/diskfs/go-diskfs v1.9.4
	github.com/moby/sys/mountinfo v0.7.3
	golang.org/x/sys v0.49.0
)

require github.com/google/uuid v1.6.0 // indirect
