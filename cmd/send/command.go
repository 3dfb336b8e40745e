// Package send is the "send" subcommand: signed sample Resend events posted to a receiver or
// Ingress, with a summary of the status codes (package sender does the work).
package send

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/sender"
)

const summary = "Send signed sample Resend events to a receiver (testing)"

// Command is the "send" subcommand.
var Command = cli.Command{Name: "send", Summary: summary, Run: run}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := cli.NewFlagSet("send", summary+`.

Without --file it posts sample events of every Resend event type (or of --type), signed with
the svix library exactly as Resend does, and prints how many got which status code.
Example: resend-webhook-operator send --url=http://127.0.0.1:8080/ --secret=whsec_... --count=100`, stdout)
	var (
		o          sender.Options
		secretFile string
		file       string
		types      cli.StringList
	)
	fs.StringVar(&o.URL, "url", "", "receiver or Ingress URL to POST to (required)")
	fs.StringVar(&o.Host, "host", "", "Host header to send (for an Ingress host rule); default from --url")
	fs.StringVar(&o.Secret, "secret", "", "signing secret whsec_… (prefer --secret-file: args are visible to other users)")
	fs.StringVar(&secretFile, "secret-file", "", "file holding the signing secret")
	fs.BoolVar(&o.WrongSecret, "wrong-secret", false, "sign with a random wrong secret (expect 401)")
	fs.IntVar(&o.Count, "count", 0, "distinct events to send, cycling through the types (0 = one per type)")
	fs.Var(&types, "type", "event types to send, comma-separated or repeated (default: all Resend event types)")
	fs.StringVar(&file, "file", "", "send this JSON file (a Resend event with a \"type\") instead of samples; --count copies with new ids")
	fs.IntVar(&o.Duplicates, "duplicates", 0, "re-deliveries of already-sent ids, sent after the distinct events (expect 200, not processed twice)")
	fs.IntVar(&o.Forged, "forged", 0, "extra events signed with a random wrong secret (expect 401)")
	fs.Float64Var(&o.Rate, "rate", 0, "requests per second (0 = as fast as --concurrency allows)")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "requests in flight")
	fs.DurationVar(&o.Timeout, "timeout", 15*time.Second, "timeout of one request")
	if err := cli.Parse(fs, args, getenv); err != nil {
		return err
	}
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		o.Secret = strings.TrimSpace(string(b))
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		o.Body = b
	}
	for _, t := range types {
		if !isKnownType(t) {
			fmt.Fprintf(stdout, "note: %q is not a Resend event type this tool knows; sending it anyway\n", t)
		}
	}
	o.Types = types
	s, err := sender.Send(ctx, o)
	if s != nil {
		s.Print(stdout)
	}
	if err != nil {
		return err
	}
	if errs := s.Errors(); len(errs) > 0 {
		return fmt.Errorf("send: %d of %d requests failed: %w", len(errs), len(s.Results), errors.Join(errs[:1]...))
	}
	return nil
}

func isKnownType(t string) bool { return slices.Contains(resendapi.EventTypes, t) }
