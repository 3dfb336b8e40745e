package queuestore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Park saves the task id, which the calling handler holds right now (Asynq state active), so
// that the handler can return nil without consuming an attempt: RestoreDue later puts the
// saved message (with the retried count from before this attempt) back in the pending list.
// It reports false, and saves nothing, when Asynq no longer holds the task as active.
func (s *Store) Park(ctx context.Context, id string, due time.Time) (bool, error) {
	n, err := parkScript.Run(ctx, s.rdb, []string{s.task(id), s.k.held, s.k.heldMsg}, id, due.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("park task %s: %w", id, err)
	}
	return n == 1, nil
}

// RestoreResult counts what RestoreDue did.
type RestoreResult struct {
	// Restored tasks are pending in Asynq again.
	Restored int
	// Dropped parked copies were not needed: Asynq had the task queued itself, or it is a
	// recorded dead letter.
	Dropped int
	// Waiting tasks are still active in Asynq (the parking handler has not returned yet).
	Waiting int
}

// RestoreDue restores parked tasks whose due time has come, up to maxBatches × BatchSize of
// them (0 means no limit).
func (s *Store) RestoreDue(ctx context.Context, now time.Time, maxBatches int) (RestoreResult, error) {
	var res RestoreResult
	until := strconv.FormatInt(now.UnixMilli(), 10)
	offset := int64(0)
	for batch := 0; maxBatches == 0 || batch < maxBatches; batch++ {
		ids, err := s.rdb.ZRangeByScore(ctx, s.k.held, &redis.ZRangeBy{Min: "-inf", Max: until, Offset: offset, Count: BatchSize}).Result()
		if err != nil {
			return res, fmt.Errorf("list parked tasks: %w", err)
		}
		if len(ids) == 0 {
			return res, nil
		}
		calls := make([]scriptCall, len(ids))
		for i, id := range ids {
			calls[i] = scriptCall{
				keys: []string{s.k.held, s.k.heldMsg, s.task(id), s.k.pending, s.k.completed, s.k.archived, s.record(id)},
				args: []any{id, now.UnixNano()},
			}
		}
		cmds, err := runBatch(ctx, s.rdb, restoreScript, calls)
		if err != nil {
			return res, fmt.Errorf("restore parked tasks: %w", err)
		}
		for _, c := range cmds {
			switch v, _ := c.Int(); v {
			case 1:
				res.Restored++
			case 2:
				res.Dropped++
			case -1:
				res.Waiting++
				offset++ // stays in the index: skip it on the next page
			}
		}
	}
	return res, nil
}

// Keep is one pass of the keeper every worker runs (and the dlq command before it acts):
// restore due parked tasks, then absorb what Asynq archived, each bounded to maxBatches
// batches (0 = until done).
func (s *Store) Keep(ctx context.Context, now time.Time, maxBatches int) (RestoreResult, int, error) {
	restored, err := s.RestoreDue(ctx, now, maxBatches)
	if err != nil {
		return restored, 0, err
	}
	absorbed, err := s.Absorb(ctx, maxBatches)
	return restored, absorbed, err
}
