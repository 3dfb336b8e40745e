package cli

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseEnvFallback(t *testing.T) {
	env := map[string]string{"RWH_REDIS_URL": "redis://env:6379/0", "RWH_QUEUE": "from-env", "RWH_EVENTS": "email.sent, email.bounced"}
	fs := NewFlagSet("x", "test", io.Discard)
	url := fs.String("redis-url", "redis://default", "")
	queue := fs.String("queue", "", "")
	var events StringList
	fs.Var(&events, "events", "")
	if err := Parse(fs, []string{"--queue=from-flag"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *url != "redis://env:6379/0" || *queue != "from-flag" || strings.Join(events, "|") != "email.sent|email.bounced" {
		t.Fatalf("url=%q queue=%q events=%q", *url, *queue, events)
	}
}

func TestParseErrors(t *testing.T) {
	fs := NewFlagSet("x", "test", io.Discard)
	fs.Int("n", 1, "")
	if err := Parse(fs, []string{"--help"}, func(string) string { return "" }); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	fs = NewFlagSet("x", "test", io.Discard)
	fs.Int("n", 1, "")
	if err := Parse(fs, nil, func(k string) string { return map[string]string{"RWH_N": "abc"}[k] }); err == nil || !strings.Contains(err.Error(), "RWH_N") {
		t.Fatalf("bad env value: %v", err)
	}
	fs = NewFlagSet("x", "test", io.Discard)
	if err := Parse(fs, []string{"stray"}, func(string) string { return "" }); err == nil {
		t.Fatal("stray argument accepted")
	}
}
