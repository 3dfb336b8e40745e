package worker

import (
	"context"
	"os"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
)

// Main runs a custom worker: it parses the same flags as the built-in "worker" subcommand
// (so the operator's rendered container args work unchanged; a leading "worker" argument is
// skipped), calls setup to register handlers, and processes events until SIGTERM or SIGINT.
// When --sink-url is given, events no registered pattern matches are forwarded to the sink, as
// the built-in worker does; without it they are dead-lettered. Main exits the process.
func Main(setup func(w *Worker) error) {
	cli.Main(func(ctx context.Context) error { return MainContext(ctx, os.Args[1:], setup) })
}

// MainContext is Main without the process handling: it runs until ctx is done and returns.
func MainContext(ctx context.Context, args []string, setup func(w *Worker) error) error {
	if len(args) > 0 && args[0] == "worker" {
		args = args[1:]
	}
	cfg, sink, err := parseFlags("worker", "Custom worker built on the resend-webhook-operator worker SDK", args, os.Getenv, os.Stdout)
	if err != nil {
		return err
	}
	return runWorker(ctx, cfg, sink, setup)
}
