package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// deliver runs the handler under the circuit breaker. While the breaker is open the event is
// held here: the task stays active in asynq and counts no attempt, and with every slot holding
// asynq dequeues nothing more, so the backlog waits in the queue. One holder at a time probes
// with a real delivery. When a held event's budget (half the attempt's time left when holding
// began) runs out, or the worker stops, it is parked: saved with the retried count it had, then
// handed back to asynq as done, and restored to the queue by the keeper.
func (w *Worker) deliver(ctx context.Context, h Handler, ev *Event) error {
	b := w.breaker
	if b == nil {
		return w.call(ctx, h, ev)
	}
	var holdUntil time.Time
	for {
		switch b.admit() {
		case admitDeliver:
			err := w.call(ctx, h, ev)
			if !b.done(err, false) {
				return err
			}
		case admitProbe:
			err := w.probe(ctx, h, ev)
			if !b.done(err, true) {
				return err
			}
		}
		if holdUntil.IsZero() {
			holdUntil = halfwayToDeadline(ctx)
		}
		if !w.hold(ctx, holdUntil) {
			return w.park(ctx, ev)
		}
	}
}

// probe delivers a held event as the breaker's probe, within half of the time the attempt has
// left, so that a failed probe still leaves time to park the event before asynq's deadline.
func (w *Worker) probe(ctx context.Context, h Handler, ev *Event) error {
	pctx, cancel := context.WithDeadline(ctx, halfwayToDeadline(ctx))
	defer cancel()
	err := w.call(pctx, h, ev)
	if err != nil && !IsUnavailable(err) && errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		err = &unavailableError{err: err, class: "timeout"} // the probe itself timed out
	}
	return err
}

// halfwayToDeadline is now plus half the time left before ctx's deadline.
func halfwayToDeadline(ctx context.Context) time.Time {
	now := time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		return now.Add(DefaultMaxDuration / 2)
	}
	return now.Add(deadline.Sub(now) / 2)
}

// hold waits while the breaker holds events. It returns true when the caller should ask the
// breaker again (a change, a due probe, the horizon) and false when the event must be parked
// (its hold budget ran out, the worker stops, or the attempt's context ended).
func (w *Worker) hold(ctx context.Context, until time.Time) bool {
	w.metrics.held.Inc()
	defer w.metrics.held.Dec()
	changed, wakeAt, holding := w.breaker.waitState()
	if !holding {
		return true
	}
	now := time.Now()
	if !now.Before(until) {
		return false
	}
	timer := time.NewTimer(max(earlier(until, wakeAt).Sub(now), 0))
	defer timer.Stop()
	select {
	case <-changed:
		return true
	case <-timer.C:
		return time.Now().Before(until)
	case <-w.stopCh:
		return false
	case <-ctx.Done():
		return false
	}
}

// park saves the held event's task so that asynq may complete it without an attempt counted;
// the keeper restores it. When asynq no longer holds the task (it was handed back at shutdown)
// nothing is saved and the result does not matter to asynq.
func (w *Worker) park(ctx context.Context, ev *Event) error {
	id, _ := asynq.GetTaskID(ctx)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if deadline, ok := ctx.Deadline(); ok {
		sctx, cancel = context.WithDeadline(sctx, deadline)
		defer cancel()
	}
	ok, err := w.storeOf(ctx).Park(sctx, id, time.Now())
	switch {
	case err != nil:
		return Unavailable(fmt.Errorf("sink unavailable, and parking the event failed: %w", err))
	case !ok:
		return fmt.Errorf("%w: the task is no longer active", errAttemptCut)
	}
	w.log.Debug("event parked while the sink is unavailable", "event_type", metricLabel(ev.Type), "svix_id", ev.ID)
	return errParked
}

// breakerChanged logs a transition, updates the metrics and wakes the sink reporter. It runs
// under the breaker's lock: it must not call back into the breaker.
func (w *Worker) breakerChanged(ev breakerEvent) {
	switch {
	case ev.expired:
		w.log.Warn("sink still unavailable after the breaker's max hold: delivering again under the retry policy",
			"error_class", ev.class, "open_since", ev.since.UTC().Format(time.RFC3339), "max_hold", w.cfg.Breaker.MaxHold.String())
		w.metrics.transitions.WithLabelValues("expired").Inc()
	case ev.open:
		w.log.Warn("sink unavailable: circuit breaker open, holding deliveries", "error_class", ev.class,
			"threshold", w.cfg.Breaker.Threshold, "next_probe_in", ev.nextWait.String())
		w.metrics.circuitOpen.Set(1)
		w.metrics.transitions.WithLabelValues("open").Inc()
	default:
		w.log.Info("sink available again: circuit breaker closed, deliveries resume")
		w.metrics.circuitOpen.Set(0)
		w.metrics.transitions.WithLabelValues("closed").Inc()
	}
	select {
	case w.reported <- struct{}{}:
	default:
	}
}
