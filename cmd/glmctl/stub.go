package main

import (
	"errors"

	"github.com/glmctl/glmctl/internal/stub"
	"github.com/urfave/cli/v2"
)

// stubCommand is the hidden `glmctl stub vllm|webui`: the stand-in model
// server and web UI, with the flags of cmd/vllm-stub and cmd/webui-stub, so
// the demo config runs them through the glmctl binary itself.
func stubCommand() *cli.Command {
	sub := []*cli.Command{stub.VLLMCommand(), stub.WebUICommand()}
	for _, c := range sub {
		action := c.Action
		c.Action = func(ctx *cli.Context) error {
			err := action(ctx)
			var ee *stub.ExitError
			if errors.As(err, &ee) {
				return exit(ee.Code, nil)
			}
			return err
		}
	}
	return &cli.Command{
		Name:        "stub",
		Hidden:      true,
		Usage:       "run a stand-in model server or web UI",
		Subcommands: sub,
	}
}
