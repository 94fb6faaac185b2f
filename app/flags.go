package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/config"
)

// Flags shared by several commands.
var (
	configFlag = &cli.StringFlag{
		Name:    "config",
		Usage:   "configuration `FILE` (default $" + config.EnvVar + " or " + config.DefaultPath + ")",
		EnvVars: nil,
	}
	rootFlag = &cli.StringFlag{
		Name:  "root",
		Value: "/",
		Usage: "overlay the directories of this root `DIR` instead of /",
	}
	jsonFlag = &cli.BoolFlag{
		Name:  "json",
		Usage: "print machine-readable JSON",
	}
)
