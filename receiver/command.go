package receiver

import (
	"context"
	"errors"
	"io"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
)

const summary = "Verify Resend (Svix-signed) webhooks and enqueue them to Redis"

// Command is the "receiver" subcommand.
var Command = cli.Command{Name: "receiver", Summary: summary, Run: run}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := cli.NewFlagSet("receiver", summary, stdout)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return err
	}
	return errors.New("receiver: not implemented yet")
}
