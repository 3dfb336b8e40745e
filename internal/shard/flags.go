package shard

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Flags are the sharding flags of receiver, worker and dlq; the operator renders them from
// spec.queue.shards and status.queue.previousShards.
type Flags struct {
	Shards   int
	Previous Counts
}

// Register adds --shards and --previous-shards to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.IntVar(&f.Shards, "shards", 1, fmt.Sprintf("number of queues the events are spread over by svix-id, 1..%d: 1 is --queue itself, more are QUEUE.0 … (see docs/sharding.md)", MaxShards))
	fs.Var(&f.Previous, "previous-shards", "comma-separated earlier --shards values whose queues are still drained (workers) and searched for re-deliveries (receivers)")
}

// Layout validates the flags and returns the layout of queue.
func (f *Flags) Layout(queue string) (Layout, error) {
	var errs []error
	if f.Shards < 1 || f.Shards > MaxShards {
		errs = append(errs, fmt.Errorf("--shards=%d is not within 1..%d", f.Shards, MaxShards))
	}
	for _, p := range f.Previous {
		if p < 1 || p > MaxShards {
			errs = append(errs, fmt.Errorf("--previous-shards: %d is not within 1..%d", p, MaxShards))
		}
	}
	prev := slices.DeleteFunc(slices.Clone(f.Previous), func(p int) bool { return p == f.Shards })
	slices.Sort(prev)
	return Layout{Queue: queue, Shards: f.Shards, Previous: slices.Compact(prev)}, errors.Join(errs...)
}

// Counts is a comma-separated list of shard counts.
type Counts []int

func (c *Counts) String() string {
	s := make([]string, len(*c))
	for i, n := range *c {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// Set parses "4,2" (an empty value is no counts).
func (c *Counts) Set(v string) error {
	*c = nil
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return fmt.Errorf("%q is not a number", part)
		}
		*c = append(*c, n)
	}
	return nil
}
