package queuestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ErrNotDeadLetter is returned (wrapped) for an id the store has no dead letter of.
var ErrNotDeadLetter = errors.New("not a dead letter")

// WriteDeadLetter stores r in one round trip, but only while Asynq holds the task as active
// (the worker calls it on a final failure, before returning the error to Asynq). It reports
// whether the record was written.
func (s *Store) WriteDeadLetter(ctx context.Context, r Record) (bool, error) {
	if r.FailedAt.IsZero() {
		r.FailedAt = time.Now()
	}
	args := append([]any{r.ID, r.FailedAt.UnixMilli()}, r.fields()...)
	n, err := writeDeadLetterScript.Run(ctx, s.rdb, []string{s.task(r.ID), s.record(r.ID), s.k.dead}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("write dead letter %s: %w", r.ID, err)
	}
	return n == 1, nil
}

// RemoveRecord deletes the record of id if there is one: the worker calls it when a task that
// had already failed before (retried > 0) succeeds, because a record written just before a
// crash or a shutdown hand-back is stale once the task ran again and succeeded.
func (s *Store) RemoveRecord(ctx context.Context, id string) error {
	if err := removeRecordScript.Run(ctx, s.rdb, []string{s.record(id), s.k.dead}, id).Err(); err != nil {
		return fmt.Errorf("remove dead letter record %s: %w", id, err)
	}
	return nil
}

// Absorb moves what Asynq archived into the store, BatchSize ids per Redis call, until Asynq's
// archived set holds nothing absorbable or maxBatches calls were made (0 means no limit). Ids
// with a record (the worker wrote it first) just leave Asynq's archived set; any other archived
// task (one Asynq archived on its own: deadline or lease expiry on a last attempt, a foreign
// consumer) is copied from the Inspector's decoded TaskInfo first. Each id moves atomically.
func (s *Store) Absorb(ctx context.Context, maxBatches int) (int, error) {
	total := 0
	for batch := 0; maxBatches == 0 || batch < maxBatches; batch++ {
		res, err := absorbRecordedScript.Run(ctx, s.rdb, []string{s.k.archived, s.k.heldMsg}, s.k.deadPrefix, BatchSize).Slice()
		if err != nil || len(res) == 0 {
			return total, fmt.Errorf("absorb archived tasks: %w", cmpErr(err))
		}
		left, _ := res[0].(int64)
		moved := make([]string, 0, len(res)-1)
		for _, v := range res[1:] {
			if id, ok := v.(string); ok {
				moved = append(moved, id)
			}
		}
		if left > 0 {
			ids, err := s.absorbUnrecorded(ctx)
			moved = append(moved, ids...)
			if err != nil {
				return total + len(moved), err
			}
		}
		total += len(moved)
		if err := s.slimMarkers(ctx, moved); err != nil {
			return total, err
		}
		if len(moved) == 0 {
			return total, nil // nothing (more) can move now
		}
	}
	return total, nil
}

// cmpErr names an empty script reply, which Redis never sends for these scripts.
func cmpErr(err error) error {
	if err == nil {
		return errors.New("empty reply")
	}
	return err
}

// absorbUnrecorded copies one page of archived tasks that have no record into the store and
// returns the ids it moved.
func (s *Store) absorbUnrecorded(ctx context.Context) ([]string, error) {
	infos, err := s.insp.ListArchivedTasks(s.queue, asynq.PageSize(BatchSize))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("absorb archived tasks: %w", err)
	}
	calls := make([]scriptCall, 0, len(infos))
	for _, ti := range infos {
		r := RecordFromTaskInfo(ti)
		calls = append(calls, scriptCall{
			keys: []string{s.k.archived, s.record(ti.ID), s.k.dead, s.k.heldMsg},
			args: append([]any{ti.ID, r.FailedAt.UnixMilli()}, r.fields()...),
		})
	}
	if len(calls) == 0 {
		return nil, nil
	}
	cmds, err := runBatch(ctx, s.rdb, absorbScript, calls)
	if err != nil {
		return nil, fmt.Errorf("absorb archived tasks: %w", err)
	}
	var moved []string
	for i, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			moved = append(moved, infos[i].ID)
		}
	}
	return moved, nil
}

// RecordFromTaskInfo is the record of a task Asynq archived: Asynq counts retries before the
// failed attempt, so attempts made = Retried+1.
func RecordFromTaskInfo(ti *asynq.TaskInfo) Record {
	failed := ti.LastFailedAt
	if failed.IsZero() {
		failed = time.Now()
	}
	return Record{
		ID: ti.ID, TaskType: ti.Type, Payload: ti.Payload, Headers: ti.Headers,
		Attempts: ti.Retried + 1, MaxAttempts: ti.MaxRetry + 1, Timeout: ti.Timeout, Retention: ti.Retention,
		LastError: ti.LastErr, FailedAt: failed,
	}
}

// Count is the number of dead letters in the store.
func (s *Store) Count(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.k.dead).Result()
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// List returns up to limit dead letters starting at offset, newest failure first, without
// their payloads. limit <= 0 means BatchSize.
func (s *Store) List(ctx context.Context, offset, limit int) ([]Record, error) {
	if limit <= 0 {
		limit = BatchSize
	}
	ids, err := s.rdb.ZRevRange(ctx, s.k.dead, int64(offset), int64(offset+limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return s.summaries(ctx, ids)
}

// newest returns up to limit dead letters' ids with their failed-at scores, newest first,
// starting at offset.
func (s *Store) newest(ctx context.Context, offset, limit int) ([]redis.Z, error) {
	z, err := s.rdb.ZRevRangeWithScores(ctx, s.k.dead, int64(offset), int64(offset+limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return z, nil
}

// summaries reads the dead letters ids without their payloads, in the order given, leaving out
// those deleted or replayed since the ids were read.
func (s *Store) summaries(ctx context.Context, ids []string) ([]Record, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.record(id), summaryFields...)
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
	}
	out := make([]Record, 0, len(ids))
	for i, id := range ids {
		h := map[string]string{}
		for j, v := range cmds[i].Val() {
			if sv, ok := v.(string); ok {
				h[summaryFields[j]] = sv
			}
		}
		if len(h) == 0 {
			continue // deleted or replayed since the index was read
		}
		r, err := decodeRecord(id, h)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Get returns the full dead letter of id, or an error wrapping ErrNotDeadLetter.
func (s *Store) Get(ctx context.Context, id string) (Record, error) {
	recs, err := s.load(ctx, []string{id})
	if err != nil {
		return Record{}, err
	}
	if recs[0] == nil {
		return Record{}, fmt.Errorf("%s: %w", id, ErrNotDeadLetter)
	}
	return *recs[0], nil
}

// load reads full records; a missing one is nil.
func (s *Store) load(ctx context.Context, ids []string) ([]*Record, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.record(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := make([]*Record, len(ids))
	for i, id := range ids {
		if len(cmds[i].Val()) == 0 {
			continue
		}
		r, err := decodeRecord(id, cmds[i].Val())
		if err != nil {
			return nil, err
		}
		out[i] = &r
	}
	return out, nil
}

// ReplayOptions override the policy a replayed task gets; zero fields keep the record's.
type ReplayOptions struct {
	MaxAttempts int
	Timeout     time.Duration
	Retention   time.Duration
	// DefaultTimeout and DefaultRetention apply when neither the option nor the record has a
	// value (a record absorbed from a task that carried none). Zero means 60s and 24h.
	DefaultTimeout   time.Duration
	DefaultRetention time.Duration
}

// Replay defaults.
const (
	DefaultReplayTimeout   = 60 * time.Second
	DefaultReplayRetention = 24 * time.Hour
)

// ReplayResult counts what a replay did.
type ReplayResult struct {
	// Replayed dead letters were enqueued again with a fresh retry budget.
	Replayed int
	// AlreadyQueued dead letters had their id in Asynq already (a previous replay that stopped
	// half-way, or a new delivery from Resend); their records were removed.
	AlreadyQueued int
}

// Replay enqueues the dead letters ids again, each as a new task with the same id, type,
// payload and headers and a fresh retry budget (the record's policy unless opt overrides it),
// then deletes their records. Asynq's archived placeholder is deleted first, and only when it
// is archived (never a live task). A crash between the steps leaves the record, so replaying
// again finishes the job. Per-id failures are joined into the error; the others go on.
func (s *Store) Replay(ctx context.Context, ids []string, opt ReplayOptions) (ReplayResult, error) {
	var total ReplayResult
	var errs []error
	for start := 0; start < len(ids); start += BatchSize {
		res, err := s.replayBatch(ctx, ids[start:min(start+BatchSize, len(ids))], opt)
		total.Replayed += res.Replayed
		total.AlreadyQueued += res.AlreadyQueued
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return total, joinBounded(errs)
}

// ReplayAll replays every dead letter that existed when it started, BatchSize at a time.
func (s *Store) ReplayAll(ctx context.Context, opt ReplayOptions) (ReplayResult, error) {
	var total ReplayResult
	var errs []error
	err := s.eachBatch(ctx, func(ids []string) int {
		res, err := s.replayBatch(ctx, ids, opt)
		total.Replayed += res.Replayed
		total.AlreadyQueued += res.AlreadyQueued
		if err != nil {
			errs = append(errs, err)
		}
		return res.Replayed + res.AlreadyQueued
	})
	if err != nil {
		errs = append(errs, err)
	}
	return total, joinBounded(errs)
}

// eachBatch calls fn with the ids of the dead letters, oldest failure first, BatchSize at a
// time, until it has seen as many as existed when it started; fn returns how many of them it
// removed from the index, so ids it left (failures) are skipped rather than retried forever.
// Bounding by count rather than by time keeps it independent of the workers' clocks, and keeps
// a replayed event that fails again right away from being replayed twice.
func (s *Store) eachBatch(ctx context.Context, fn func(ids []string) (removed int)) error {
	limit, err := s.Count(ctx)
	if err != nil {
		return err
	}
	offset, seen := int64(0), int64(0)
	for seen < limit && ctx.Err() == nil {
		count := min(BatchSize, limit-seen)
		ids, err := s.rdb.ZRange(ctx, s.k.dead, offset, offset+count-1).Result()
		if err != nil {
			return fmt.Errorf("list dead letters: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		seen += int64(len(ids))
		removed := fn(ids)
		offset += int64(len(ids) - removed)
	}
	return ctx.Err()
}

func (s *Store) replayBatch(ctx context.Context, ids []string, opt ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	recs, err := s.load(ctx, ids)
	if err != nil {
		return res, err
	}
	var errs []error
	var found []*Record
	for i, r := range recs {
		if r == nil {
			errs = append(errs, fmt.Errorf("%s: %w", ids[i], ErrNotDeadLetter))
			continue
		}
		found = append(found, r)
	}
	if len(found) == 0 {
		return res, joinBounded(errs)
	}
	calls := make([]scriptCall, len(found))
	for i, r := range found {
		calls[i] = scriptCall{keys: []string{s.task(r.ID), s.k.archived}, args: []any{r.ID}}
	}
	if _, err := runBatch(ctx, s.rdb, dropPlaceholderScript, calls); err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	if err := s.rdb.SAdd(ctx, QueuesKey, s.queue).Err(); err != nil { // as any enqueue does
		return res, fmt.Errorf("replay: register queue: %w", err)
	}
	enqueues := make([]scriptCall, len(found))
	now := time.Now()
	for i, r := range found {
		t := s.replayTask(r, opt)
		enqueues[i] = enqueueCall(t, t.Encode(), now)
	}
	cmds, err := runBatch(ctx, s.rdb, enqueueScript, enqueues)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	var done []string
	for i, r := range found {
		switch n, err := cmds[i].Int64(); {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: enqueue: %w", r.ID, err))
			continue
		case n == 1:
			res.Replayed++
		default:
			res.AlreadyQueued++
		}
		done = append(done, r.ID)
	}
	if len(done) > 0 {
		rm := make([]scriptCall, len(done))
		for i, id := range done {
			rm[i] = scriptCall{keys: []string{s.record(id), s.k.dead}, args: []any{id}}
		}
		if _, err := runBatch(ctx, s.rdb, removeRecordScript, rm); err != nil {
			errs = append(errs, fmt.Errorf("replay: remove records: %w", err))
		}
	}
	return res, joinBounded(errs)
}

// replayTask is r as a new task: its id, type, payload and headers, with opt's retry policy
// or the one it failed under.
func (s *Store) replayTask(r *Record, opt ReplayOptions) *Task {
	maxAttempts := cmpOr(opt.MaxAttempts, r.MaxAttempts, 1)
	timeout := cmpOr(opt.Timeout, r.Timeout, opt.DefaultTimeout, DefaultReplayTimeout)
	retention := cmpOr(opt.Retention, r.Retention, opt.DefaultRetention, DefaultReplayRetention)
	t := &Task{ID: r.ID, Type: r.TaskType, Queue: s.queue, Payload: r.Payload, Retry: max(maxAttempts, 1) - 1,
		Timeout: roundUpSecond(timeout), Retention: roundUpSecond(retention)}
	for _, name := range slices.Sorted(maps.Keys(r.Headers)) {
		t.Headers = append(t.Headers, Header{Name: name, Value: r.Headers[name]})
	}
	return t
}

// cmpOr is cmp.Or for positive values: the first one > 0.
func cmpOr[T int | time.Duration](vals ...T) T {
	for _, v := range vals {
		if v > 0 {
			return v
		}
	}
	return 0
}

// roundUpSecond: Asynq keeps Timeout and Retention in whole seconds, rounding down.
func roundUpSecond(d time.Duration) time.Duration {
	return d + (time.Second-d%time.Second)%time.Second
}

// Delete forgets the dead letters ids: record, index entry and Asynq's archived hash. After
// it, a re-delivery of such a svix-id is enqueued as a new event. It returns how many existed.
func (s *Store) Delete(ctx context.Context, ids []string) (int, error) {
	n := 0
	var errs []error
	for start := 0; start < len(ids); start += BatchSize {
		batch := ids[start:min(start+BatchSize, len(ids))]
		deleted, err := s.deleteBatch(ctx, batch)
		n += len(deleted)
		if err != nil {
			return n, err
		}
		for _, id := range batch {
			if !deleted[id] {
				errs = append(errs, fmt.Errorf("%s: %w", id, ErrNotDeadLetter))
			}
		}
	}
	return n, joinBounded(errs)
}

// DeleteAll forgets every dead letter that existed when it started.
func (s *Store) DeleteAll(ctx context.Context) (int, error) {
	n := 0
	var failed error
	err := s.eachBatch(ctx, func(ids []string) int {
		deleted, err := s.deleteBatch(ctx, ids)
		if err != nil {
			failed = err
		}
		n += len(deleted)
		return len(deleted)
	})
	return n, errors.Join(failed, err)
}

func (s *Store) deleteBatch(ctx context.Context, ids []string) (map[string]bool, error) {
	calls := make([]scriptCall, len(ids))
	for i, id := range ids {
		calls[i] = scriptCall{keys: []string{s.record(id), s.k.dead, s.task(id), s.k.archived}, args: []any{id}}
	}
	cmds, err := runBatch(ctx, s.rdb, deleteScript, calls)
	if err != nil {
		return nil, fmt.Errorf("delete dead letters: %w", err)
	}
	deleted := map[string]bool{}
	for i, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			deleted[ids[i]] = true
		}
	}
	return deleted, nil
}

// joinBounded joins errs, keeping the first ten and counting the rest, so replaying 100,000
// unknown ids does not build a 100,000-line error.
func joinBounded(errs []error) error {
	const keep = 10
	if len(errs) <= keep {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs[:keep:keep], fmt.Errorf("… and %d more", len(errs)-keep))...)
}
