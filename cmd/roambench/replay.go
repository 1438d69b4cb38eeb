package main

import "github.com/urfave/cli/v2"

func replayCommand() *cli.Command {
	return &cli.Command{Name: "replay"}
}
