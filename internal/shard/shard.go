// Package shard spreads one webhook's events over several Asynq queues (spec.queue.shards).
//
// An event's shard is a stable hash of its svix-id, so every re-delivery of an event lands on
// the queue of its first delivery and is deduplicated there. With one shard the queue is the
// webhook's queue itself, so an unsharded webhook keeps the queue it always had.
//
// With N > 1 shards, shard k's queue is "<queue>.<k>" when that name falls in the k-th of N
// equal ranges of Redis Cluster hash slots, else "<queue>.<k>-<s>" with the smallest s that
// does. Asynq hash-tags every key with its queue name, so on a cluster whose slots are spread
// evenly over its primaries (what redis-cli --cluster create does) the shards land on
// different primaries instead of wherever their names happen to hash.
package shard

import (
	"hash/fnv"
	"slices"
	"strconv"
)

// MaxShards bounds spec.queue.shards.
const MaxShards = 64

// slots is the number of Redis Cluster hash slots.
const slots = 16384

// Queues are the queue names of base's events spread over n shards (n < 1 counts as 1).
func Queues(base string, n int) []string {
	if n <= 1 {
		return []string{base}
	}
	names := make([]string, n)
	for k := range n {
		names[k] = queueName(base, k, n)
	}
	return names
}

// queueName is shard k of n's queue: the first candidate name whose hash slot lies in the
// k-th of n equal slot ranges.
func queueName(base string, k, n int) string {
	lo, hi := k*slots/n, (k+1)*slots/n
	name := base + "." + strconv.Itoa(k)
	for s := 1; ; s++ {
		if slot := int(Slot(name)); slot >= lo && slot < hi {
			return name
		}
		name = base + "." + strconv.Itoa(k) + "-" + strconv.Itoa(s)
	}
}

// Index is the shard (0 ≤ Index < n) of the event with svix-id id: FNV-1a, stable across
// processes, versions and architectures.
func Index(id string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// Layout is how a webhook's events are spread now, and how they were spread before changes
// whose queues still hold tasks (or remember ids for deduplication).
type Layout struct {
	// Queue is the webhook's queue name (spec.queue.name or its default).
	Queue string
	// Shards is the current number of shards (at least 1).
	Shards int
	// Previous are earlier shard counts whose queues are still draining.
	Previous []int
}

// Current are the queues new events go to.
func (l Layout) Current() []string { return Queues(l.Queue, l.Shards) }

// QueueFor is the queue of the event with svix-id id.
func (l Layout) QueueFor(id string) string {
	return queueName1(l.Queue, Index(id, l.Shards), l.Shards)
}

// queueName1 is Queues(base, n)[k] without building the others.
func queueName1(base string, k, n int) string {
	if n <= 1 {
		return base
	}
	return queueName(base, k, n)
}

// EarlierQueuesFor are the queues the event with svix-id id went to under the previous
// layouts, other than its current queue: a re-delivery must be looked up there too.
func (l Layout) EarlierQueuesFor(id string) []string {
	now := l.QueueFor(id)
	var qs []string
	for _, p := range l.Previous {
		if q := queueName1(l.Queue, Index(id, p), p); q != now && !slices.Contains(qs, q) {
			qs = append(qs, q)
		}
	}
	return qs
}

// All are the queues workers consume and status adds up: the current ones first, then those
// only previous layouts have.
func (l Layout) All() []string {
	all := l.Current()
	for _, p := range l.Previous {
		for _, q := range Queues(l.Queue, p) {
			if !slices.Contains(all, q) {
				all = append(all, q)
			}
		}
	}
	return all
}

// Draining are the queues of previous layouts that the current layout does not use.
func (l Layout) Draining(previous int) []string {
	cur := l.Current()
	var qs []string
	for _, q := range Queues(l.Queue, previous) {
		if !slices.Contains(cur, q) {
			qs = append(qs, q)
		}
	}
	return qs
}
