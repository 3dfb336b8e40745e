package worker

import (
	"context"
	"errors"
	"io"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/exepages"
)

const summary = "Process queued events: forward to a sink with retries and a dead-letter set"

// Command is the "worker" subcommand: the SDK's worker with the sink forwarder as its only
// handler.
var Command = cli.Command{Name: "worker", Summary: summary, Run: run}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, sink, err := parseFlags("worker", summary, args, getenv, stdout)
	if err != nil {
		return err
	}
	if sink.URL == "" {
		return errors.New("--sink-url is required: the built-in worker forwards every event to it (run your own image built on the worker SDK to handle events in code)")
	}
	return runWorker(ctx, cfg, sink, func(w *Worker) error {
		exepages.ReleaseLogged(w.log) // the whole operator's start-up, which a worker does not need
		return nil
	})
}

// runWorker builds the worker, lets setup register handlers, adds the sink forwarder for every
// type without a handler of its own (when a sink is configured) and runs until ctx is done.
func runWorker(ctx context.Context, cfg Config, sinkCfg SinkConfig, setup func(*Worker) error) error {
	w, err := New(cfg)
	if err != nil {
		return err
	}
	if setup != nil {
		if err := setup(w); err != nil {
			return err
		}
	}
	if sinkCfg.URL != "" && !w.routes.has("*") {
		sink, err := NewSink(sinkCfg, w.log, w.reg)
		if err != nil {
			return err
		}
		defer sink.Close()
		w.Handle("*", sink)
	}
	return w.Run(ctx)
}
