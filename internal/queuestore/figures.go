package queuestore

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Figures are the sizes of a queue as the operator's status and the worker's gauges show them.
type Figures struct {
	// Pending tasks wait for a worker, parked tasks (Held) included.
	Pending int64
	// Held is the part of Pending that a circuit breaker parked.
	Held int64
	// Active tasks are being processed (held ones included: a worker holds them).
	Active int64
	// Scheduled tasks wait for their time; Retry tasks for their next attempt.
	Scheduled, Retry int64
	// Dead letters: the store's, plus ids Asynq archived that the keeper has not absorbed yet.
	Dead int64
	// Completed tasks are remembered for deduplication (Asynq's figure: it includes parked
	// tasks until they are restored).
	Completed int64
	// Latency is the age of the oldest pending task in Asynq's list.
	Latency time.Duration
}

// Figures reads the queue's figures: Asynq's from its Inspector plus the store's counts. An
// Inspector or Redis error is returned as such, never as zero tasks; a queue Asynq does not
// know yet (nothing was ever enqueued) has Asynq's figures at zero.
func (s *Store) Figures(ctx context.Context) (Figures, error) {
	counts, err := countsScript.Run(ctx, s.rdb, []string{s.k.dead, s.k.held, s.k.archived, s.k.heldMsg}, s.k.deadPrefix).Int64Slice()
	if err != nil {
		return Figures{}, fmt.Errorf("queue figures: %w", err)
	}
	f := Figures{Held: counts[1], Pending: counts[1], Dead: counts[0] + counts[2]}
	info, err := s.insp.GetQueueInfo(s.queue)
	if err != nil {
		queues, qerr := s.insp.Queues()
		if qerr == nil && !slices.Contains(queues, s.queue) {
			return f, nil
		}
		return Figures{}, fmt.Errorf("queue figures of %s: %w", s.queue, err)
	}
	f.Pending += int64(info.Pending)
	f.Active, f.Scheduled, f.Retry = int64(info.Active), int64(info.Scheduled), int64(info.Retry)
	f.Completed, f.Latency = int64(info.Completed), info.Latency
	return f, nil
}
