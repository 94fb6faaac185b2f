package app

import (
	"github.com/urfave/cli/v2"

	"github.com/ovpkg/ovpkg/config"
)

// Flags shared by several commands.
var (
	configFlag = &cli.StringFlag{
		Name:    "config",
		Usage:   "configuration file (default $" + config.EnvVar + " or " + config.DefaultPath + ")",
		EnvVars: nil,
	}
	rootFlag = &cli.StringFlag{
		Name:  "root",
		Value: "/",
		Usage: "overlay the directories of this root instead of /",
	}
	jsonFlag = &cli.BoolFlag{
		Name:  "json",
		Usage: "print machine-readable JSON",
	}
)
