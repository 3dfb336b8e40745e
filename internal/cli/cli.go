// Package cli holds what every subcommand of the binary shares: its signature and flag parsing
// with RWH_* environment fallbacks.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Command is one subcommand of the binary.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error
}

// EnvName is the environment variable that stands in for a flag: --redis-url → RWH_REDIS_URL.
func EnvName(flagName string) string {
	return "RWH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs; every flag not given on the command line takes its value from its
// RWH_* environment variable when that is set. Command-line flags win over the environment.
// It returns flag.ErrHelp for -h/--help (usage already printed to fs.Output()).
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Main runs a program's body with a context that SIGINT and SIGTERM cancel, then exits the
// process: with status 0 after --help, and with the error on stderr and status 1 after a
// failure.
func Main(run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// NewFlagSet returns a FlagSet that reports errors instead of exiting and prints usage to w.
func NewFlagSet(name, summary string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: resend-webhook-operator %s [flags]\n\n%s\n\nEvery flag can also be set with an environment variable RWH_<FLAG>, e.g. --redis-url as RWH_REDIS_URL.\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// Logger returns the JSON logger every subcommand writes to stdout with.
func Logger(w io.Writer, component string, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})).With("component", component)
}

// StringList is a flag.Value for comma-separated lists (--events a,b or repeated flags).
type StringList []string

func (s *StringList) String() string { return strings.Join(*s, ",") }

// Set appends comma-separated values; empty items are dropped.
func (s *StringList) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*s = append(*s, item)
		}
	}
	return nil
}
