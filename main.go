// Command resend-webhook-operator is the one binary of the project: the operator (manager), the
// webhook receiver, the queue worker, and a test sender, selected by the first argument.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/dlq"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/send"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/receiver"
	"github.com/resend-webhook-operator/resend-webhook-operator/worker"
)

var commands = []cli.Command{manager.Command, receiver.Command, worker.Command, send.Command, dlq.Command}

func main() {
	cli.Main(func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Getenv, os.Stdout) })
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return errors.New("no subcommand given")
		}
		return nil
	}
	for _, c := range commands {
		if c.Name == args[0] {
			return c.Run(ctx, args[1:], getenv, stdout)
		}
	}
	usage(stdout)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: resend-webhook-operator <subcommand> [flags]\n\nSubcommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nRun 'resend-webhook-operator <subcommand> --help' for its flags.")
}
