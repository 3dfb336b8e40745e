package worker

import (
	"context"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
)

// keeperInterval is how often the keeper runs when nothing nudges it.
const keeperInterval = time.Second

// keeperBatches bounds one keeper pass: at most this many batches of restores and of absorbs.
const keeperBatches = 20

// keep runs until ctx is done: every keeperInterval, and right after a dead letter, it restores
// due parked tasks and absorbs what asynq archived into the dead-letter store (so asynq's trim
// of its archive at 10,000 entries never meets them); on every breaker change and every
// queuestore.SinkHeartbeat it writes this worker's sink report.
func (w *Worker) keep(ctx context.Context) {
	tick := time.NewTicker(keeperInterval)
	defer tick.Stop()
	heartbeat := time.NewTicker(queuestore.SinkHeartbeat)
	defer heartbeat.Stop()
	w.reportSink(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.keepOnce(ctx)
		case <-w.nudge:
			w.keepOnce(ctx)
		case <-heartbeat.C:
			w.reportSink(ctx)
		case <-w.reported:
			w.reportSink(ctx)
		}
	}
}

func (w *Worker) keepOnce(ctx context.Context) {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	restored, absorbed, err := w.stores.Keep(kctx, time.Now(), keeperBatches)
	w.metrics.restored.Add(float64(restored.Restored))
	w.metrics.absorbed.Add(float64(absorbed))
	if ctx.Err() != nil {
		return
	}
	// Log the change, not every second of a Redis outage.
	switch failing := err != nil; {
	case failing && !w.keeperFailing:
		w.log.Warn("keeper: could not restore parked events or absorb archived ones; retrying every second", "error", err.Error())
	case !failing && w.keeperFailing:
		w.log.Info("keeper: working again")
	}
	w.keeperFailing = err != nil
}

func (w *Worker) reportSink(ctx context.Context) {
	r := queuestore.SinkReport{State: queuestore.SinkDisabled}
	if w.breaker != nil {
		open, class, since := w.breaker.report()
		r.State, r.Since = queuestore.SinkClosed, time.Time{}
		if open {
			r.State, r.ErrorClass, r.Since = queuestore.SinkOpen, class, since.UTC()
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.stores.Sinks().ReportSink(rctx, w.id, r); err != nil && ctx.Err() == nil {
		w.log.Debug("could not write the sink report", "error", err.Error())
	}
}
