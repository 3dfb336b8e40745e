package queuestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
)

// Sharded is the state of a webhook whose events are spread over several queues (package
// shard): one Store per queue of the layout, current and draining ones, added up. The workers'
// sink reports are kept once per webhook, under its queue name. With one shard and no previous
// layout it is exactly the Store of the webhook's queue.
type Sharded struct {
	layout  shard.Layout
	stores  []*Store // of layout.All(), current queues first
	byQueue map[string]*Store
	sinks   *Store
}

// NewSharded returns the stores of layout's queues on rdb.
func NewSharded(rdb redis.UniversalClient, layout shard.Layout) *Sharded {
	s := &Sharded{layout: layout, byQueue: map[string]*Store{}, sinks: New(rdb, layout.Queue)}
	for _, q := range layout.All() {
		st := New(rdb, q)
		s.stores = append(s.stores, st)
		s.byQueue[q] = st
	}
	return s
}

// Stores are the stores of every queue, current ones first.
func (s *Sharded) Stores() []*Store { return s.stores }

// Of is the store of queue, nil when queue is not one of the layout's.
func (s *Sharded) Of(queue string) *Store { return s.byQueue[queue] }

// Sinks is the store holding the workers' sink reports.
func (s *Sharded) Sinks() *Store { return s.sinks }

// FiguresByQueue reads the figures of every queue.
func (s *Sharded) FiguresByQueue(ctx context.Context) (map[string]Figures, error) {
	out := make(map[string]Figures, len(s.stores))
	for _, st := range s.stores {
		f, err := st.Figures(ctx)
		if err != nil {
			return nil, err
		}
		out[st.Queue()] = f
	}
	return out, nil
}

// SumFigures adds up the figures of several queues (FiguresByQueue); Latency is the largest.
func SumFigures(byQueue map[string]Figures) Figures {
	var sum Figures
	for _, f := range byQueue {
		sum = sum.add(f)
	}
	return sum
}

func (f Figures) add(g Figures) Figures {
	return Figures{
		Pending: f.Pending + g.Pending, Held: f.Held + g.Held, Active: f.Active + g.Active,
		Scheduled: f.Scheduled + g.Scheduled, Retry: f.Retry + g.Retry, Dead: f.Dead + g.Dead,
		Completed: f.Completed + g.Completed, Latency: max(f.Latency, g.Latency),
	}
}

// Empty reports whether the figures count no task in any state, remembered ones included.
func (f Figures) Empty() bool {
	return f.Pending == 0 && f.Active == 0 && f.Scheduled == 0 && f.Retry == 0 && f.Dead == 0 && f.Completed == 0
}

// Keep runs Store.Keep on every queue.
func (s *Sharded) Keep(ctx context.Context, now time.Time, maxBatches int) (RestoreResult, int, error) {
	var total RestoreResult
	absorbed := 0
	var errs []error
	for _, st := range s.stores {
		r, a, err := st.Keep(ctx, now, maxBatches)
		total.Restored += r.Restored
		total.Dropped += r.Dropped
		total.Waiting += r.Waiting
		absorbed += a
		if err != nil {
			errs = append(errs, fmt.Errorf("queue %s: %w", st.Queue(), err))
		}
	}
	return total, absorbed, errors.Join(errs...)
}

// Count is the number of dead letters of all queues.
func (s *Sharded) Count(ctx context.Context) (int64, error) {
	var n int64
	for _, st := range s.stores {
		c, err := st.Count(ctx)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// Each calls fn for the dead letters of all queues, newest failure first across them (on a
// tie, current queues first), skipping the first offset and stopping after limit of them
// (limit <= 0: all). Each queue's index is read a page at a time and the records a batch at a
// time, so a store of 100,000 dead letters is walked without holding it or blocking Redis.
func (s *Sharded) Each(ctx context.Context, offset, limit int, fn func(Record) error) error {
	heads := make([]mergeHead, len(s.stores))
	for i, st := range s.stores {
		heads[i] = mergeHead{store: st}
	}
	var batch []mergedID
	// flush reads the batch store by store, then hands the records out in the merged order.
	flush := func() error {
		byStore := map[*Store][]string{}
		for _, m := range batch {
			byStore[m.store] = append(byStore[m.store], m.id)
		}
		found := map[*Store]map[string]Record{}
		for st, ids := range byStore {
			recs, err := st.summaries(ctx, ids)
			if err != nil {
				return err
			}
			found[st] = make(map[string]Record, len(recs))
			for _, r := range recs {
				r.Queue = st.Queue()
				found[st][r.ID] = r
			}
		}
		for _, m := range batch {
			if r, ok := found[m.store][m.id]; ok { // else deleted or replayed since
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		batch = batch[:0]
		return nil
	}
	for seen := 0; limit <= 0 || seen < offset+limit; seen++ {
		next, err := nextNewest(ctx, heads)
		if err != nil {
			return err
		}
		if next == nil {
			break
		}
		if seen < offset {
			continue
		}
		batch = append(batch, *next)
		if len(batch) == BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// mergeHead is one queue's place in Each's merge: the page of its index read ahead, and where
// the next page starts.
type mergeHead struct {
	store *Store
	page  []redis.Z
	read  int  // index entries read so far
	done  bool // the index has no more
}

type mergedID struct {
	store *Store
	id    string
}

// nextNewest takes the newest entry among the heads (the first head on a tie), reading a
// head's next page when its last one is used up; nil when every index is exhausted.
func nextNewest(ctx context.Context, heads []mergeHead) (*mergedID, error) {
	best := -1
	for i := range heads {
		h := &heads[i]
		if len(h.page) == 0 && !h.done {
			page, err := h.store.newest(ctx, h.read, BatchSize)
			if err != nil {
				return nil, err
			}
			h.page, h.read, h.done = page, h.read+len(page), len(page) < BatchSize
		}
		if len(h.page) > 0 && (best < 0 || h.page[0].Score > heads[best].page[0].Score) {
			best = i
		}
	}
	if best < 0 {
		return nil, nil
	}
	h := &heads[best]
	id, _ := h.page[0].Member.(string)
	h.page = h.page[1:]
	return &mergedID{store: h.store, id: id}, nil
}

// Replay replays the dead letters ids, each from the queue that holds it.
func (s *Sharded) Replay(ctx context.Context, ids []string, opt ReplayOptions) (ReplayResult, error) {
	groups, err := s.locate(ctx, ids)
	if err != nil {
		return ReplayResult{}, err
	}
	var total ReplayResult
	var errs []error
	for st, group := range groups {
		res, err := st.Replay(ctx, group, opt)
		total.Replayed += res.Replayed
		total.AlreadyQueued += res.AlreadyQueued
		errs = append(errs, err)
	}
	return total, joinBounded(errs)
}

// ReplayAll replays every dead letter of every queue.
func (s *Sharded) ReplayAll(ctx context.Context, opt ReplayOptions) (ReplayResult, error) {
	var total ReplayResult
	var errs []error
	for _, st := range s.stores {
		res, err := st.ReplayAll(ctx, opt)
		total.Replayed += res.Replayed
		total.AlreadyQueued += res.AlreadyQueued
		errs = append(errs, err)
	}
	return total, joinBounded(errs)
}

// Delete forgets the dead letters ids, each in the queue that holds it.
func (s *Sharded) Delete(ctx context.Context, ids []string) (int, error) {
	groups, err := s.locate(ctx, ids)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for st, group := range groups {
		d, err := st.Delete(ctx, group)
		n += d
		errs = append(errs, err)
	}
	return n, joinBounded(errs)
}

// DeleteAll forgets every dead letter of every queue.
func (s *Sharded) DeleteAll(ctx context.Context) (int, error) {
	n := 0
	var errs []error
	for _, st := range s.stores {
		d, err := st.DeleteAll(ctx)
		n += d
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// locate groups ids by the store whose dead-letter store holds them: an id's current shard,
// else one of its shards under a previous layout. An id found nowhere goes to its current
// shard, whose answer is then ErrNotDeadLetter.
func (s *Sharded) locate(ctx context.Context, ids []string) (map[*Store][]string, error) {
	type candidate struct {
		st     *Store
		exists *redis.IntCmd
	}
	cands := make([][]candidate, len(ids))
	pipe := s.sinks.rdb.Pipeline()
	for i, id := range ids {
		for _, q := range append([]string{s.layout.QueueFor(id)}, s.layout.EarlierQueuesFor(id)...) {
			st := s.byQueue[q]
			cands[i] = append(cands[i], candidate{st, pipe.Exists(ctx, st.record(id))})
		}
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("look up dead letters: %w", err)
		}
	}
	groups := map[*Store][]string{}
	for i, id := range ids {
		home := cands[i][0].st
		for _, c := range cands[i] {
			if c.exists.Val() > 0 {
				home = c.st
				break
			}
		}
		groups[home] = append(groups[home], id)
	}
	return groups, nil
}
