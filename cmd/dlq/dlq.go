// Package dlq is the "dlq" subcommand: list, replay and delete the dead letters of a
// queue, kept in the dead-letter store (package queuestore). Every action first absorbs what
// Asynq archived and no worker has absorbed yet. Replaying is deliberately a manual act: a
// receiver never re-enqueues a dead-lettered svix-id by itself.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
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
	MaxAttempts  int       `json:"maxAttempts"`
	LastError    string    `json:"lastError"`
	LastFailedAt time.Time `json:"lastFailedAt"`
	ReceivedAt   string    `json:"receivedAt,omitempty"`
	Queue        string    `json:"queue"`
}

func entryOf(r queuestore.Record) Entry {
	return Entry{
		ID: r.ID, EventType: r.EventType(), Webhook: r.Webhook(), Attempts: r.Attempts, MaxAttempts: r.MaxAttempts,
		// Records are written cleaned; clean again for those written by older workers.
		LastError: queuestore.CleanError(r.LastError), LastFailedAt: r.FailedAt, ReceivedAt: r.ReceivedAt(),
		Queue: r.Queue,
	}
}

type options struct {
	redis       redisconn.Flags
	shards      shard.Flags
	queue       string
	ids         cli.StringList
	all         bool
	limit       int
	offset      int
	output      string
	maxAttempts int
	maxDuration time.Duration
	dedupWindow time.Duration
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
	var o options
	fs := cli.NewFlagSet("dlq "+action, summary, stdout)
	o.redis.Register(fs)
	o.shards.Register(fs)
	fs.StringVar(&o.queue, "queue", "", "Asynq queue name (status.queue.name of the ResendWebhook; with --shards, of every shard)")
	fs.Var(&o.ids, "id", "svix-id of a dead letter (repeatable or comma-separated); replay/delete")
	fs.BoolVar(&o.all, "all", false, "replay/delete every dead letter of the queue")
	fs.IntVar(&o.limit, "limit", 100, "list: how many to show, newest failure first; 0 lists all")
	fs.IntVar(&o.offset, "offset", 0, "list: how many of the newest to skip (paging)")
	fs.StringVar(&o.output, "o", "table", "list: output format, table or json")
	fs.IntVar(&o.maxAttempts, "max-attempts", 0, "replay: attempts the replayed events get (default: each dead letter's own)")
	fs.DurationVar(&o.maxDuration, "max-duration", 0, "replay: time one attempt may take (default: each dead letter's own)")
	fs.DurationVar(&o.dedupWindow, "dedup-window", 0, "replay: how long a replayed svix-id is remembered after it completed (default: each dead letter's own, else 24h)")
	if err := cli.Parse(fs, args[1:], getenv); err != nil {
		return err
	}
	if err := o.validate(action); err != nil {
		return err
	}
	layout, err := o.shards.Layout(o.queue)
	if err != nil {
		return err
	}
	conf, err := o.redis.Config()
	if err != nil {
		return err
	}
	opt, err := conf.ConnOpt()
	if err != nil {
		return err
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("unexpected redis client type")
	}
	defer func() { _ = rdb.Close() }()
	store := queuestore.NewSharded(rdb, layout)
	// Take in what Asynq archived and no worker absorbed yet (e.g. no worker is running).
	if _, _, err := store.Keep(ctx, time.Now(), 0); err != nil {
		return err
	}
	switch action {
	case "list":
		return list(ctx, store, o, stdout)
	case "replay":
		res, err := replay(ctx, store, o)
		fmt.Fprintf(stdout, "replayed: %d dead letter(s) of queue %s", res.Replayed, o.queue)
		if res.AlreadyQueued > 0 {
			fmt.Fprintf(stdout, " (%d more were queued already; their dead letters are removed)", res.AlreadyQueued)
		}
		fmt.Fprintln(stdout)
		return err
	default:
		var n int
		if o.all {
			n, err = store.DeleteAll(ctx)
		} else {
			n, err = store.Delete(ctx, o.ids)
		}
		fmt.Fprintf(stdout, "deleted: %d dead letter(s) of queue %s\n", n, o.queue)
		return err
	}
}

func (o options) validate(action string) error {
	var errs []error
	if o.queue == "" {
		errs = append(errs, errors.New("--queue is required"))
	}
	if action != "list" && o.all == (len(o.ids) > 0) {
		errs = append(errs, errors.New("give either --id (one or more) or --all"))
	}
	if o.limit < 0 || o.offset < 0 {
		errs = append(errs, errors.New("--limit and --offset must not be negative"))
	}
	if o.output != "table" && o.output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: want table or json", o.output))
	}
	if o.maxAttempts < 0 || o.maxAttempts > 25 || o.maxDuration < 0 || o.dedupWindow < 0 {
		errs = append(errs, errors.New("--max-attempts must be within 0..25, --max-duration and --dedup-window not negative"))
	}
	return errors.Join(errs...)
}

func replay(ctx context.Context, store *queuestore.Sharded, o options) (queuestore.ReplayResult, error) {
	opt := queuestore.ReplayOptions{MaxAttempts: o.maxAttempts, Timeout: o.maxDuration, Retention: o.dedupWindow}
	if o.all {
		return store.ReplayAll(ctx, opt)
	}
	return store.Replay(ctx, o.ids, opt)
}

// list prints the dead letters newest failure first, across shards too, a batch at a time, so
// --limit 0 lists 100,000 of them without holding them all (or blocking Redis).
func list(ctx context.Context, store *queuestore.Sharded, o options, w io.Writer) error {
	// With shards, say which queue holds each dead letter.
	var out printer = &tablePrinter{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0), queues: len(store.Stores()) > 1}
	if o.output == "json" {
		out = &jsonPrinter{w: w}
	}
	if err := out.begin(); err != nil {
		return err
	}
	err := store.Each(ctx, o.offset, o.limit, func(r queuestore.Record) error { return out.entry(entryOf(r)) })
	if err != nil {
		return err
	}
	return out.end()
}

type printer interface {
	begin() error
	entry(Entry) error
	end() error
}

type tablePrinter struct {
	tw     *tabwriter.Writer
	queues bool // a QUEUE column
}

func (p *tablePrinter) begin() error {
	_, err := fmt.Fprintln(p.tw, p.withQueue("ID", "QUEUE")+"\tTYPE\tATTEMPTS\tLAST FAILED\tLAST ERROR")
	return err
}

func (p *tablePrinter) entry(e Entry) error {
	_, err := fmt.Fprintf(p.tw, "%s\t%s\t%d/%d\t%s\t%s\n", p.withQueue(e.ID, e.Queue), e.EventType, e.Attempts, e.MaxAttempts, e.LastFailedAt.UTC().Format(time.RFC3339), e.LastError)
	return err
}

func (p *tablePrinter) end() error { return p.tw.Flush() }

// withQueue is the first cell, followed by queue's when the table has a QUEUE column.
func (p *tablePrinter) withQueue(first, queue string) string {
	if !p.queues {
		return first
	}
	return first + "\t" + queue
}

// jsonPrinter streams a JSON array, one entry per line.
type jsonPrinter struct {
	w io.Writer
	n int
}

func (p *jsonPrinter) begin() error { _, err := io.WriteString(p.w, "["); return err }

func (p *jsonPrinter) entry(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	sep := ",\n  "
	if p.n == 0 {
		sep = "\n  "
	}
	p.n++
	_, err = fmt.Fprintf(p.w, "%s%s", sep, b)
	return err
}

func (p *jsonPrinter) end() error {
	end := "]\n"
	if p.n > 0 {
		end = "\n]\n"
	}
	_, err := io.WriteString(p.w, end)
	return err
}
