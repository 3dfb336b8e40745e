package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRunDispatch(t *testing.T) {
	noenv := func(string) string { return "" }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, noenv, &out); err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), c.Name) {
			t.Errorf("usage lacks subcommand %q", c.Name)
		}
	}
	if err := run(context.Background(), nil, noenv, &out); err == nil {
		t.Error("no subcommand should be an error")
	}
	if err := run(context.Background(), []string{"bogus"}, noenv, &out); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown subcommand: %v", err)
	}
	for _, c := range commands {
		out.Reset()
		err := run(context.Background(), []string{c.Name, "--help"}, noenv, &out)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s --help: %v", c.Name, err)
		}
		if !strings.Contains(out.String(), "Usage") {
			t.Errorf("%s --help printed no usage: %q", c.Name, out.String())
		}
	}
}
