package sender

import (
	"context"
	"errors"
	"io"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
)

const summary = "Send signed sample Resend events to a receiver (testing)"

// Command is the "send" subcommand.
var Command = cli.Command{Name: "send", Summary: summary, Run: run}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := cli.NewFlagSet("send", summary, stdout)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return err
	}
	return errors.New("send: not implemented yet")
}
