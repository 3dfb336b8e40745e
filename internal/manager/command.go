package manager

import (
	"context"
	"errors"
	"io"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
)

const summary = "Run the operator (controller manager)"

// Command is the "manager" subcommand.
var Command = cli.Command{Name: "manager", Summary: summary, Run: run}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := cli.NewFlagSet("manager", summary, stdout)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return err
	}
	return errors.New("manager: not implemented yet")
}
