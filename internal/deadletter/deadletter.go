// Package deadletter is the "dlq" subcommand: list, replay and delete the dead letters
// (Asynq's archived tasks) of a queue. Replaying is deliberately a manual act: a receiver never
// re-enqueues a dead-lettered svix-id by itself.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

const summary = "List, replay or delete dead-lettered events of a queue (list | replay | delete)"

// Command is the "dlq" subcommand.
var Command = cli.Command{Name: "dlq", Summary: summary, Run: run}

// Entry is one dead letter as printed by "dlq list -o json".
type Entry struct {
	ID           string    `json:"id"`
	EventType    string    `json:"eventType"`
	Webhook      string    `json:"webhook,omitempty"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"lastError"`
	LastFailedAt time.Time `json:"lastFailedAt"`
	ReceivedAt   string    `json:"receivedAt,omitempty"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay" && args[0] != "delete") {
		fmt.Fprintf(stdout, "Usage: resend-webhook-operator dlq list|replay|delete [flags]\n\n%s\n", summary)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errors.New("dlq needs an action: list, replay or delete")
	}
	action := args[0]
	fs := cli.NewFlagSet("dlq "+action, summary, stdout)
	var redisFlags redisconn.Flags
	redisFlags.Register(fs)
	queue := fs.String("queue", "", "Asynq queue name (status.queue.name of the ResendWebhook)")
	var ids cli.StringList
	fs.Var(&ids, "id", "svix-id of a dead letter (repeatable or comma-separated); replay/delete")
	all := fs.Bool("all", false, "replay/delete every dead letter of the queue")
	limit := fs.Int("limit", 100, "list: how many to show")
	output := fs.String("o", "table", "list: output format, table or json")
	if err := cli.Parse(fs, args[1:], getenv); err != nil {
		return err
	}
	if *queue == "" {
		return errors.New("--queue is required")
	}
	conf, err := redisFlags.Config()
	if err != nil {
		return err
	}
	opt, err := conf.ConnOpt()
	if err != nil {
		return err
	}
	insp := asynq.NewInspector(opt)
	defer func() { _ = insp.Close() }()
	switch action {
	case "list":
		entries, err := List(insp, *queue, *limit)
		if err != nil {
			return err
		}
		return printEntries(stdout, entries, *output)
	default:
		if *all == (len(ids) > 0) {
			return errors.New("give either --id (one or more) or --all")
		}
		n, err := apply(insp, action, *queue, ids, *all)
		fmt.Fprintf(stdout, "%s: %d dead letter(s) of queue %s\n", map[string]string{"replay": "replayed", "delete": "deleted"}[action], n, *queue)
		return err
	}
}

// List returns up to limit dead letters of queue, newest failure first as asynq orders them.
func List(insp *asynq.Inspector, queue string, limit int) ([]Entry, error) {
	tasks, err := insp.ListArchivedTasks(queue, asynq.PageSize(limit))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", queue, err)
	}
	entries := make([]Entry, 0, len(tasks))
	for _, t := range tasks {
		et, _ := task.EventType(t.Type)
		entries = append(entries, Entry{
			ID: t.ID, EventType: et, Webhook: t.Headers[task.HeaderWebhook],
			Attempts: t.Retried + 1, LastError: t.LastErr, LastFailedAt: t.LastFailedAt,
			ReceivedAt: t.Headers[task.HeaderReceivedAt],
		})
	}
	return entries, nil
}

// apply replays (moves back to pending) or deletes dead letters. A replayed task keeps its
// attempt count, so one more failure dead-letters it again instead of starting a new cycle.
func apply(insp *asynq.Inspector, action, queue string, ids []string, all bool) (int, error) {
	if all {
		if action == "replay" {
			return insp.RunAllArchivedTasks(queue)
		}
		return insp.DeleteAllArchivedTasks(queue)
	}
	var errs []error
	n := 0
	for _, id := range ids {
		info, err := insp.GetTaskInfo(queue, id)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		case info.State != asynq.TaskStateArchived:
			errs = append(errs, fmt.Errorf("%s: not a dead letter (state %s)", id, info.State))
			continue
		}
		if action == "replay" {
			err = insp.RunTask(queue, id)
		} else {
			err = insp.DeleteTask(queue, id)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func printEntries(w io.Writer, entries []Entry, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTYPE\tATTEMPTS\tLAST FAILED\tLAST ERROR")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.ID, e.EventType, e.Attempts, e.LastFailedAt.UTC().Format(time.RFC3339), e.LastError)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("-o %q: want table or json", format)
	}
}
