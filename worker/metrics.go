package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
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
	panics       prometheus.Counter
	circuitOpen  prometheus.Gauge
	transitions  *prometheus.CounterVec
	held         prometheus.Gauge
	parked       prometheus.Counter
	restored     prometheus.Counter
	absorbed     prometheus.Counter
}

var queueStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed", "held"}

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
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_worker_panics_total", Help: "Handler panics, recovered and counted as failed attempts.",
		}),
		circuitOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_worker_circuit_open", Help: "1 while the circuit breaker is open (the sink looks down), else 0.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwh_worker_circuit_transitions_total", Help: "Circuit breaker transitions, by the state entered: open, closed, expired (open longer than max hold).",
		}, []string{"state"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_worker_held", Help: "Events this worker's handlers hold now because the circuit breaker is open.",
		}),
		parked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_worker_parked_total", Help: "Held events parked (handed back without an attempt counted) to be restored to the queue.",
		}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_worker_restored_total", Help: "Parked events this worker's keeper put back in the queue.",
		}),
		absorbed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_worker_absorbed_total", Help: "Dead letters this worker's keeper moved from Asynq's archive into the dead-letter store.",
		}),
	}
	for _, s := range []string{"open", "closed", "expired"} {
		m.transitions.WithLabelValues(s)
	}
	reg.MustRegister(m.processed, m.succeeded, m.retried, m.deadLettered, m.duration, m.inFlight, m.queueTasks, m.queueLatency,
		m.panics, m.circuitOpen, m.transitions, m.held, m.parked, m.restored, m.absorbed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observeFailure counts a failed attempt the way asynq will treat it (same order of checks).
func (m *metrics) observeFailure(ctx context.Context, eventType string, err error) (outcome string) {
	switch {
	case errors.Is(err, asynq.RevokeTask):
		return "revoked"
	case isFinal(ctx, err):
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
	client   redis.UniversalClient
	stores   *queuestore.Sharded
	m        *metrics
	log      *slog.Logger
	period   time.Duration
	readyErr atomic.Pointer[error]
}

func newQueueWatcher(c redis.UniversalClient, stores *queuestore.Sharded, m *metrics, log *slog.Logger) *queueWatcher {
	w := &queueWatcher{client: c, stores: stores, m: m, log: log, period: 5 * time.Second}
	notYet := errors.New("redis not checked yet")
	w.readyErr.Store(&notYet)
	for _, st := range stores.Stores() {
		for _, s := range queueStates {
			m.queueTasks.WithLabelValues(st.Queue(), s).Set(0) // present (as zero) before the queue exists
		}
		m.queueLatency.WithLabelValues(st.Queue()).Set(0)
	}
	return w
}

// ready is the /readyz check: the last PING succeeded.
func (w *queueWatcher) ready(context.Context) error { return *w.readyErr.Load() }

// run pings every 2 s and refreshes the queue gauges every period until ctx is done.
func (w *queueWatcher) run(ctx context.Context) {
	ping := time.NewTicker(2 * time.Second)
	defer ping.Stop()
	refresh := time.NewTicker(w.period)
	defer refresh.Stop()
	w.ping(ctx)
	w.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			w.ping(ctx)
		case <-refresh.C:
			w.refresh(ctx)
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

func (w *queueWatcher) refresh(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, st := range w.stores.Stores() {
		f, err := st.Figures(fctx)
		if err != nil {
			return // the readiness check reports Redis trouble; keep the last figures
		}
		q := st.Queue()
		for state, n := range map[string]int64{"pending": f.Pending, "active": f.Active, "scheduled": f.Scheduled,
			"retry": f.Retry, "archived": f.Dead, "completed": f.Completed, "held": f.Held} {
			w.m.queueTasks.WithLabelValues(q, state).Set(float64(n))
		}
		w.m.queueLatency.WithLabelValues(q).Set(f.Latency.Seconds())
	}
}
