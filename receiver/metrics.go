package receiver

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the receiver's Prometheus metrics. A nil *Metrics records nothing, which keeps
// the handler usable without a registry (benchmarks, embedding).
type Metrics struct {
	requests       *prometheus.CounterVec
	byOutcome      [numOutcomes]prometheus.Counter // resolved once: no label lookup per request
	verifySeconds  prometheus.Histogram
	enqueueSeconds prometheus.Histogram
	duplicates     prometheus.Counter
	filtered       prometheus.Counter
	secretsLoaded  prometheus.Gauge
	secretsInvalid prometheus.Gauge
	redisUp        prometheus.Gauge
	draining       prometheus.Gauge
	suppressed     prometheus.Counter
	batches        [numFlushReasons]prometheus.Counter
	batchSize      prometheus.Histogram
	inFlightGauge  prometheus.GaugeFunc
	inFlight       atomic.Pointer[atomic.Int64] // the handler's counter, read at scrape time
}

// latencyBuckets cover 50 µs … ~1.6 s: verification takes microseconds, an enqueue about a
// millisecond, and anything near a second is already trouble.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

// NewMetrics creates the metrics, registers them on reg,
// and labels them with the webhook's namespace/name.
func NewMetrics(reg prometheus.Registerer, webhook string) *Metrics {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"webhook": webhook}, reg)
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwh_receiver_requests_total",
			Help: "Webhook requests answered, by HTTP status code and reason.",
		}, []string{"code", "reason"}),
		verifySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rwh_receiver_verify_duration_seconds",
			Help:    "Time to check a request's Svix signature against all loaded secrets.",
			Buckets: latencyBuckets,
		}),
		enqueueSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rwh_receiver_enqueue_duration_seconds",
			Help:    "Time of the Redis enqueue call (successful, duplicate or failed).",
			Buckets: latencyBuckets,
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_receiver_duplicates_total",
			Help: "Deliveries whose svix-id was already enqueued (answered 200, nothing enqueued).",
		}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_receiver_filtered_total",
			Help: "Verified events whose type is not in --events (answered 200, not enqueued).",
		}),
		secretsLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_receiver_secrets_loaded",
			Help: "Valid signing secrets currently in use.",
		}),
		secretsInvalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_receiver_secrets_invalid",
			Help: "Files in --secrets-dir that are not usable secrets (empty, not whsec_, bad base64).",
		}),
		redisUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_receiver_redis_up",
			Help: "1 when the last background PING of Redis succeeded.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwh_receiver_draining",
			Help: "1 while shutting down (new webhooks get 503).",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rwh_receiver_log_lines_suppressed_total",
			Help: "Log lines of rejected requests held back by the rate limit (the requests are still counted).",
		}),
	}
	batches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rwh_receiver_enqueue_pipelines_total",
		Help: "Pipelines of enqueue scripts sent to Redis, by flush: immediate (none was in flight), queued (sent together after the one before), unbatched (--enqueue-batching=false with --min-replicas).",
	}, []string{"flush"})
	for r, name := range flushReasons {
		m.batches[r] = batches.WithLabelValues(name)
	}
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rwh_receiver_enqueue_pipeline_size",
		Help:    "Enqueue scripts per pipeline (webhook requests that shared one Redis round trip).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 8), // 1 … 128 = maxBatch
	})
	m.inFlightGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rwh_receiver_in_flight_requests",
		Help: "Webhook requests being served right now (bounded by --max-in-flight).",
	}, func() float64 {
		if n := m.inFlight.Load(); n != nil {
			return float64(n.Load())
		}
		return 0
	})
	reg.MustRegister(m.requests, m.verifySeconds, m.enqueueSeconds, m.duplicates, m.filtered,
		m.secretsLoaded, m.secretsInvalid, m.redisUp, m.draining, m.suppressed, m.inFlightGauge,
		batches, m.batchSize)
	for o := range outcome(numOutcomes) {
		m.byOutcome[o] = m.requests.WithLabelValues(o.codeLabel(), o.reason())
	}
	return m
}

// NewRegistry returns a registry with the Go and process collectors, for the admin endpoint.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (m *Metrics) observe(o outcome) {
	if m == nil {
		return
	}
	m.byOutcome[o].Inc()
	switch o {
	case outDuplicate:
		m.duplicates.Inc()
	case outFiltered:
		m.filtered.Inc()
	}
}

func (m *Metrics) observeSuppressed() {
	if m != nil {
		m.suppressed.Inc()
	}
}

// watchInFlight makes the in-flight gauge report n.
func (m *Metrics) watchInFlight(n *atomic.Int64) {
	if m != nil {
		m.inFlight.Store(n)
	}
}

func (m *Metrics) observeVerify(d time.Duration) {
	if m != nil {
		m.verifySeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) observeEnqueue(d time.Duration) {
	if m != nil {
		m.enqueueSeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) observeBatch(size int, reason flushReason) {
	if m != nil {
		m.batches[reason].Inc()
		m.batchSize.Observe(float64(size))
	}
}

func (m *Metrics) setSecrets(valid, invalid int) {
	if m != nil {
		m.secretsLoaded.Set(float64(valid))
		m.secretsInvalid.Set(float64(invalid))
	}
}

func (m *Metrics) setRedisUp(up bool) {
	if m != nil {
		m.redisUp.Set(boolFloat(up))
	}
}

func (m *Metrics) setDraining(d bool) {
	if m != nil {
		m.draining.Set(boolFloat(d))
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
