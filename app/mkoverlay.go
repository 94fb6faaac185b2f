package app

import "github.com/urfave/cli/v2"

func mkoverlayCommand() *cli.Command {
	return &cli.Command{Name: "mkoverlay", Usage: "create a card image (MBR + ext2) and record it in the config", Action: notYet}
}
