package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// metrics are the worker's Prometheus series, on a registry of their own.
type metrics struct {
	processed    *prometheus.CounterVec
	succeeded    *prometheus.CounterVec
	retried      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	queueTasks   *prometheus.GaugeVec
	queueLatency *prometheus.GaugeVec
}

var queueStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

func newMetrics(reg prometheus.Registerer) *metrics {
	byType := []string{"event_type"}
	m := &metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwh_worker_processed_total", Help: "Attempts finished, by event type.",
		}, byType),
		succeeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwh_worker_succeeded_total", Help: "Attempts that succeeded, by event type.",
		}, byType),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwh_worker_retried_total", Help: "Failed attempts that will be retried, by event type.",
		}, byType),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwh_worker_dead_lettered_total", Help: "Events moved to the dead-letter (archived) set: permanent failure or attempts exhausted, by event type.",
		}, byType),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rwh_worker_attempt_duration_seconds",
			Help:    "Duration of one attempt, by event type and outcome (success, failure).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"event_type", "outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_worker_in_flight", Help: "Attempts running now.",
		}),
		queueTasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rwh_worker_queue_tasks", Help: "Tasks in the queue by state (archived = dead letters), refreshed every few seconds.",
		}, []string{"queue", "state"}),
		queueLatency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rwh_worker_queue_latency_seconds", Help: "Age of the oldest pending task.",
		}, []string{"queue"}),
	}
	reg.MustRegister(m.processed, m.succeeded, m.retried, m.deadLettered, m.duration, m.inFlight, m.queueTasks, m.queueLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observeFailure counts a failed attempt the way asynq will treat it (same order of checks).
func (m *metrics) observeFailure(ctx context.Context, eventType string, err error) (outcome string) {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	switch {
	case errors.Is(err, asynq.RevokeTask):
		return "revoked"
	case retried >= maxRetry || errors.Is(err, asynq.SkipRetry):
		m.deadLettered.WithLabelValues(eventType).Inc()
		return "dead-lettered"
	default:
		m.retried.WithLabelValues(eventType).Inc()
		return "retry"
	}
}

// queueWatcher keeps the queue gauges current and answers readiness from a cached PING, so
// neither a scrape nor a probe waits on Redis.
type queueWatcher struct {
	queue     string
	client    redis.UniversalClient
	inspector *asynq.Inspector
	m         *metrics
	log       *slog.Logger
	period    time.Duration
	readyErr  atomic.Pointer[error]
}

func newQueueWatcher(opt asynq.RedisConnOpt, queue string, m *metrics, log *slog.Logger) (*queueWatcher, error) {
	c, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("unexpected redis client type")
	}
	w := &queueWatcher{queue: queue, client: c, inspector: asynq.NewInspectorFromRedisClient(c), m: m, log: log, period: 5 * time.Second}
	notYet := errors.New("redis not checked yet")
	w.readyErr.Store(&notYet)
	for _, s := range queueStates {
		m.queueTasks.WithLabelValues(queue, s).Set(0) // present (as zero) before the queue exists
	}
	m.queueLatency.WithLabelValues(queue).Set(0)
	return w, nil
}

// ready is the /readyz check: the last PING succeeded.
func (w *queueWatcher) ready(context.Context) error { return *w.readyErr.Load() }

// run pings every 2 s and refreshes the queue gauges every period until ctx is done.
func (w *queueWatcher) run(ctx context.Context) {
	defer func() { _ = w.client.Close() }()
	ping := time.NewTicker(2 * time.Second)
	defer ping.Stop()
	refresh := time.NewTicker(w.period)
	defer refresh.Stop()
	w.ping(ctx)
	w.refresh()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			w.ping(ctx)
		case <-refresh.C:
			w.refresh()
		}
	}
}

func (w *queueWatcher) ping(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := w.client.Ping(pctx).Err()
	if prev := *w.readyErr.Load(); (prev == nil) != (err == nil) {
		if err != nil {
			w.log.Warn("redis unreachable; not ready", "error", err.Error())
		} else {
			w.log.Info("redis reachable; ready")
		}
	}
	w.readyErr.Store(&err)
}

func (w *queueWatcher) refresh() {
	queues, err := w.inspector.Queues()
	if err != nil {
		return // the readiness check reports Redis trouble; keep the last figures
	}
	if !slices.Contains(queues, w.queue) {
		return // no task was ever enqueued: the zeros set at start stand
	}
	info, err := w.inspector.GetQueueInfo(w.queue)
	if err != nil {
		return
	}
	for state, n := range map[string]int{"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
		"retry": info.Retry, "archived": info.Archived, "completed": info.Completed} {
		w.m.queueTasks.WithLabelValues(w.queue, state).Set(float64(n))
	}
	w.m.queueLatency.WithLabelValues(w.queue).Set(info.Latency.Seconds())
}
