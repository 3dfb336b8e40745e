package worker

import (
	"context"
	"errors"
	"io"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
)

const summary = "Process queued events: forward to a sink with retries and a dead-letter set"

// Command is the "worker" subcommand.
var Command = cli.Command{Name: "worker", Summary: summary, Run: run}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := cli.NewFlagSet("worker", summary, stdout)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return err
	}
	return errors.New("worker: not implemented yet")
}
