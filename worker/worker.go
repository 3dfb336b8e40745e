package worker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/admin"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// Config is everything a Worker needs; the worker flags fill it (see Main).
type Config struct {
	// Redis says how to reach Redis (asynq.RedisClientOpt, RedisFailoverClientOpt, …).
	Redis asynq.RedisConnOpt
	// Queue is the Asynq queue the receiver enqueues to (with Shards > 1, the base of the
	// shards' names).
	Queue string
	// Shards and PreviousShards are the receiver's: the worker consumes every queue of the
	// current layout and of the previous ones still draining, all with the same priority.
	// Zero Shards means 1.
	Shards         int
	PreviousShards []int
	// Concurrency is how many events are processed at once.
	Concurrency int
	// Retry is the retry schedule. Each task carries its own attempt limit (set by the
	// receiver); Retry.MaxAttempts is reported and used for nothing else.
	Retry RetryPolicy
	// MaxDuration bounds one attempt, on top of the Timeout each task carries.
	MaxDuration time.Duration
	// ShutdownGrace is how long in-flight attempts may run on after shutdown begins; what is
	// unfinished then is handed back to Redis and runs again later. Zero means
	// DefaultShutdownGrace; NoShutdownGrace hands everything back at once.
	ShutdownGrace time.Duration
	// Breaker configures the circuit breaker; the zero value is on with the defaults.
	Breaker BreakerConfig
	// DedupWindow is the Retention a dead letter records for its replay (how long its svix-id
	// is remembered after the replay completed); zero means DefaultDedupWindow. Use the
	// receiver's --dedup-window.
	DedupWindow time.Duration
	// PollInterval is how often an idle worker looks for new tasks and for due retries.
	PollInterval time.Duration
	// AdminListen is the address of /healthz, /readyz and /metrics; empty disables it.
	AdminListen string
	// OnAdminListen, if set, is called with the admin server's bound address.
	OnAdminListen func(net.Addr)
	// Logger receives JSON logs; nil means slog.Default().
	Logger *slog.Logger
}

// Defaults of the Config fields that have one (the flags' defaults).
const (
	DefaultQueue         = "default"
	DefaultConcurrency   = 10
	DefaultMaxDuration   = 60 * time.Second
	DefaultShutdownGrace = 25 * time.Second
	DefaultPollInterval  = time.Second
	DefaultDedupWindow   = 24 * time.Hour
)

// NoShutdownGrace as Config.ShutdownGrace hands unfinished attempts back to Redis as soon as
// shutdown begins (--shutdown-grace=0).
const NoShutdownGrace time.Duration = -1

func (c *Config) setDefaults() {
	c.Queue = cmp.Or(c.Queue, DefaultQueue)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.MaxDuration = cmp.Or(c.MaxDuration, DefaultMaxDuration)
	c.ShutdownGrace = cmp.Or(c.ShutdownGrace, DefaultShutdownGrace)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.DedupWindow = cmp.Or(c.DedupWindow, DefaultDedupWindow)
	c.Breaker.setDefaults()
	if c.Retry == (RetryPolicy{}) {
		c.Retry = DefaultRetryPolicy
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c Config) validate() error {
	var errs []error
	if c.Redis == nil {
		errs = append(errs, errors.New("no redis connection configured"))
	}
	if _, err := c.layout(); err != nil {
		errs = append(errs, err)
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", c.Concurrency))
	}
	if c.MaxDuration < time.Second {
		errs = append(errs, fmt.Errorf("max duration %s: must be at least 1s", c.MaxDuration))
	}
	if (c.ShutdownGrace < 0 && c.ShutdownGrace != NoShutdownGrace) || c.PollInterval < 0 || c.DedupWindow < 0 {
		errs = append(errs, errors.New("shutdown grace, poll interval and dedup window must not be negative"))
	}
	if err := c.Breaker.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Retry.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Worker consumes a queue of Resend events and runs the registered handler for each.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	routes  router
	reg     *prometheus.Registry
	metrics *metrics
	breaker *breaker // nil when disabled
	id      string   // names this worker in sink reports

	// Set by Run.
	stores   *queuestore.Sharded
	stopping atomic.Bool
	stopCh   chan struct{} // closed when shutdown begins: holders park their events
	nudge    chan struct{} // wakes the keeper (a dead letter was just written)
	reported chan struct{} // wakes the sink reporter (the breaker changed)
	// keeperFailing is the keeper's last outcome, to log changes only (keeper goroutine, then
	// Run after it stopped).
	keeperFailing bool

	mu      sync.Mutex
	running bool
}

// New validates cfg (filling in defaults) and returns a Worker with no handlers yet.
func New(cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	reg := prometheus.NewRegistry()
	w := &Worker{cfg: cfg, log: cfg.Logger, reg: reg, metrics: newMetrics(reg), id: workerID(),
		stopCh: make(chan struct{}), nudge: make(chan struct{}, 1), reported: make(chan struct{}, 1)}
	if !cfg.Breaker.Disabled {
		w.breaker = newBreaker(cfg.Breaker, w.breakerChanged)
	}
	return w, nil
}

// workerID is the pod's name (the hostname) plus a random suffix, so two workers of one
// process or one pod's restarts never share a sink report.
func workerID() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return cmp.Or(host, "worker") + "-" + hex.EncodeToString(b)
}

// Handle registers h for pattern: an event type ("email.bounced"), a prefix ("email.*"), or
// "*" for every type without a more specific handler. The longest matching pattern wins. It
// panics on an invalid or duplicate pattern, like http.ServeMux.
func (w *Worker) Handle(pattern string, h Handler) {
	if err := w.routes.handle(pattern, h); err != nil {
		panic(err)
	}
}

// HandleFunc registers fn for pattern (see Handle).
func (w *Worker) HandleFunc(pattern string, fn func(ctx context.Context, ev *Event) error) {
	w.Handle(pattern, HandlerFunc(fn))
}

// Registry is the worker's Prometheus registry, served on /metrics; register your own metrics
// with it.
func (w *Worker) Registry() *prometheus.Registry { return w.reg }

// Logger is the worker's logger.
func (w *Worker) Logger() *slog.Logger { return w.log }

// Run processes events until ctx is done, then shuts down gracefully: it stops fetching,
// parks the events its circuit breaker holds, lets in-flight attempts run for up to
// ShutdownGrace and hands the rest back to Redis.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("worker: Run called twice")
	}
	w.running = true
	w.mu.Unlock()

	rdb, ok := w.cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("worker: unexpected redis client type")
	}
	defer func() { _ = rdb.Close() }()
	layout, _ := w.cfg.layout() // validated by New
	w.stores = queuestore.NewSharded(rdb, layout)
	watcher := newQueueWatcher(rdb, w.stores, w.metrics, w.log)

	// Handlers get a context that outlives ctx: a SIGTERM must not abort attempts that the
	// grace period allows to finish. It is cancelled once asynq has handed unfinished tasks back.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	srv := asynq.NewServer(w.cfg.Redis, w.serverConfig(handlerCtx))
	if err := srv.Start(asynq.HandlerFunc(w.processTask)); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	w.log.Info("worker started", "queue", w.cfg.Queue, "queues", layout.All(), "concurrency", w.cfg.Concurrency,
		"max_attempts", w.cfg.Retry.MaxAttempts, "max_duration", w.cfg.MaxDuration.String(),
		"breaker", !w.cfg.Breaker.Disabled, "worker_id", w.id)

	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { watcher.run(bgCtx) })
	bg.Go(func() { w.keep(bgCtx) })
	adminErr := make(chan error, 1)
	if w.cfg.AdminListen != "" {
		bg.Go(func() {
			srv := admin.NewServer(admin.Handler(w.reg, watcher.ready))
			adminErr <- admin.Serve(bgCtx, w.log, "admin", w.cfg.AdminListen, srv, 5*time.Second, w.cfg.OnAdminListen)
		})
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-adminErr: // e.g. the port is taken: stop processing too
	}
	w.log.Info("shutting down: no new attempts; in-flight ones may finish", "grace", max(w.cfg.ShutdownGrace, 0).String())
	w.stopping.Store(true)
	close(w.stopCh)
	srv.Stop()
	srv.Shutdown()
	cancelHandlers()
	stopBg()
	bg.Wait()
	// Asynq has completed what this worker parked: put it back in the queue now rather than
	// leave it to the next worker's keeper, and withdraw this worker's sink report.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	w.keepOnce(fctx)
	if err := w.stores.Sinks().RemoveSinkReport(fctx, w.id); err != nil {
		w.log.Warn("could not remove the sink report", "error", err.Error())
	}
	w.log.Info("worker stopped")
	return err
}

func (w *Worker) serverConfig(handlerCtx context.Context) asynq.Config {
	return asynq.Config{
		Concurrency:    w.cfg.Concurrency,
		Queues:         w.queuePriorities(),
		BaseContext:    func() context.Context { return handlerCtx },
		RetryDelayFunc: w.cfg.Retry.RetryDelayFunc(),
		// A handler cancelled because this worker stops did not fail: asynq then retries the
		// task without counting an attempt. Any other cancellation is a failure.
		IsFailure:                func(err error) bool { return !(errors.Is(err, context.Canceled) && w.stopping.Load()) },
		ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
		ShutdownTimeout:          asynqShutdownTimeout(w.cfg.ShutdownGrace),
		TaskCheckInterval:        w.cfg.PollInterval,
		DelayedTaskCheckInterval: w.cfg.PollInterval,
		HealthCheckFunc: func(err error) {
			if err != nil {
				w.log.Warn("redis health check failed", "error", err.Error())
			}
		},
		Logger:   asynqLogger{w.log.With("source", "asynq")},
		LogLevel: asynq.InfoLevel,
	}
}

// layout is how the events are spread over queues (package shard).
func (c Config) layout() (shard.Layout, error) {
	return (&shard.Flags{Shards: cmp.Or(c.Shards, 1), Previous: c.PreviousShards}).Layout(c.Queue)
}

// queuePriorities gives every queue of the layout the same weight: asynq then picks the queue
// of each fetch at random, so shards are consumed fairly and draining ones alongside.
func (w *Worker) queuePriorities() map[string]int {
	prio := map[string]int{}
	for _, st := range w.stores.Stores() {
		prio[st.Queue()] = 1
	}
	return prio
}

// storeOf is the store of the queue the task in ctx came from.
func (w *Worker) storeOf(ctx context.Context) *queuestore.Store {
	q, _ := asynq.GetQueueName(ctx)
	if st := w.stores.Of(q); st != nil {
		return st
	}
	return w.stores.Stores()[0] // not reached: asynq fetches from the layout's queues only
}

// asynqShutdownTimeout maps the grace to asynq's ShutdownTimeout, where zero means 8 s: no
// grace becomes the smallest positive duration.
func asynqShutdownTimeout(grace time.Duration) time.Duration {
	return max(grace, time.Nanosecond)
}

// errParked is returned by deliver when the event was parked: asynq gets nil (it completes the
// task) and the keeper restores it, so the attempt is not consumed.
var errParked = errors.New("parked while the sink is unavailable")

// processTask runs one attempt: bound it by MaxDuration, route it, record metrics. On the
// attempt that dead-letters the event the record goes to the dead-letter store before asynq
// sees the error, so a crash at any point leaves the event queued, stored, or both.
func (w *Worker) processTask(ctx context.Context, t *asynq.Task) error {
	eventType, ok := task.EventType(t.Type())
	if !ok {
		eventType = t.Type()
	}
	ctx, cancel := withTimeoutIfSooner(ctx, w.cfg.MaxDuration)
	defer cancel()
	start := time.Now()
	w.metrics.inFlight.Inc()
	defer w.metrics.inFlight.Dec()
	err := w.dispatch(ctx, t, eventType, ok)
	label := metricLabel(eventType)
	if errors.Is(err, errParked) {
		w.metrics.parked.Inc()
		return nil
	}
	w.metrics.processed.WithLabelValues(label).Inc()
	if err == nil {
		w.metrics.succeeded.WithLabelValues(label).Inc()
		w.metrics.duration.WithLabelValues(label, "success").Observe(time.Since(start).Seconds())
		if retried, _ := asynq.GetRetryCount(ctx); retried > 0 {
			w.removeStaleRecord(ctx)
		}
		return nil
	}
	w.metrics.duration.WithLabelValues(label, "failure").Observe(time.Since(start).Seconds())
	err = cleanError{w.limitAttempts(ctx, t, err)}
	if isFinal(ctx, err) {
		w.recordDeadLetter(ctx, t, err)
	}
	return err
}

// isFinal reports whether asynq will archive the task on err: the same checks, in the same
// order, as asynq's handleFailedMessage (a last attempt archives whatever the error).
func isFinal(ctx context.Context, err error) bool {
	if errors.Is(err, asynq.RevokeTask) {
		return false
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	return retried >= maxRetry || errors.Is(err, asynq.SkipRetry)
}

// cleanError is the error asynq stores (LastErr) and logs: bounded, URL paths and queries cut.
type cleanError struct{ err error }

func (e cleanError) Error() string { return queuestore.CleanError(e.err.Error()) }
func (e cleanError) Unwrap() error { return e.err }

// storeTimeout bounds the worker's own Redis writes around an attempt.
const storeTimeout = 5 * time.Second

// recordDeadLetter writes the dead letter of the failing task. When it cannot (Redis trouble),
// asynq's archive still holds the task and the keeper absorbs it later.
func (w *Worker) recordDeadLetter(ctx context.Context, t *asynq.Task, err error) {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	maxAttempts := maxRetry + 1
	if t.Headers()[task.HeaderSvixID] == "" { // a foreign task: --max-attempts applied
		maxAttempts = min(maxAttempts, w.cfg.Retry.MaxAttempts)
	}
	rec := queuestore.Record{
		ID: id, TaskType: t.Type(), Payload: t.Payload(), Headers: t.Headers(),
		Attempts: retried + 1, MaxAttempts: maxAttempts,
		Timeout: w.cfg.MaxDuration, Retention: w.cfg.DedupWindow, LastError: err.Error(), FailedAt: time.Now(),
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if _, werr := w.storeOf(ctx).WriteDeadLetter(sctx, rec); werr != nil {
		w.log.Error("could not write the dead letter; asynq's archive keeps it until the keeper absorbs it",
			"svix_id", id, "error", werr.Error())
	}
	select {
	case w.nudge <- struct{}{}:
	default:
	}
}

// removeStaleRecord deletes a dead letter written for this task by an earlier attempt that did
// not reach asynq (crash, shutdown hand-back): the task just succeeded.
func (w *Worker) removeStaleRecord(ctx context.Context) {
	id, _ := asynq.GetTaskID(ctx)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := w.storeOf(ctx).RemoveRecord(sctx, id); err != nil {
		w.log.Warn("could not remove a stale dead letter of a delivered event", "svix_id", id, "error", err.Error())
	}
}

// limitAttempts applies --max-attempts to tasks that did not come from a receiver (no svix-id
// header): those carry asynq's default MaxRetry rather than the webhook's retry policy. A
// receiver's task carries its own limit, which asynq enforces.
func (w *Worker) limitAttempts(ctx context.Context, t *asynq.Task, err error) error {
	if err == nil || t.Headers()[task.HeaderSvixID] != "" || errors.Is(err, asynq.SkipRetry) {
		return err
	}
	if retried, ok := asynq.GetRetryCount(ctx); ok && retried+1 >= w.cfg.Retry.MaxAttempts {
		return fmt.Errorf("%w (attempt %d of --max-attempts=%d): %w", err, retried+1, w.cfg.Retry.MaxAttempts, asynq.SkipRetry)
	}
	return err
}

func (w *Worker) dispatch(ctx context.Context, t *asynq.Task, eventType string, ours bool) error {
	if !ours {
		return Permanent(fmt.Errorf("task type %q is not a Resend event (no %q prefix)", t.Type(), task.TypePrefix))
	}
	h := w.routes.match(eventType)
	if h == nil {
		return Permanent(fmt.Errorf("%w %q", ErrNoHandler, eventType))
	}
	ev := newEvent(ctx, t, eventType)
	if _, raw := h.(passThrough); !raw {
		ev.parseEnvelope()
	}
	return w.deliver(ctx, h, ev)
}

// call runs the handler, turning a panic into an error (logged with its stack and counted) so
// the attempt's bookkeeping — breaker, dead letter — runs as for any failure.
func (w *Worker) call(ctx context.Context, h Handler, ev *Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			w.metrics.panics.Inc()
			msg := queuestore.CleanError(fmt.Sprint(v))
			w.log.Error("handler panicked", "event_type", metricLabel(ev.Type), "svix_id", ev.ID, "panic", msg,
				"stack", queuestore.CleanError(string(debug.Stack())))
			err = fmt.Errorf("handler panicked: %s", msg)
		}
	}()
	return h.HandleEvent(ctx, ev)
}

// withTimeoutIfSooner bounds ctx by d unless its deadline is already that close (asynq sets
// the task's Timeout, usually the same value): one timer per attempt instead of two.
func withTimeoutIfSooner(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// passThrough marks handlers that only use Event.Body and the headers (the sink forwarder):
// the worker then skips decoding the JSON envelope, the largest per-event cost of its own.
type passThrough interface{ passThrough() }

// handleError is asynq's error handler: it sees every failed attempt, including those asynq
// failed itself (attempt deadline), and logs and counts it as retry or dead letter.
func (w *Worker) handleError(ctx context.Context, t *asynq.Task, err error) {
	eventType, ok := task.EventType(t.Type())
	if !ok {
		eventType = t.Type()
	}
	outcome := w.metrics.observeFailure(ctx, metricLabel(eventType), err)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	level := slog.LevelWarn
	if outcome == "dead-lettered" {
		level = slog.LevelError
	}
	msg := "attempt failed"
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "attempt failed: it ran longer than its max duration"
	}
	w.log.Log(ctx, level, msg, "event_type", eventType, "svix_id", t.Headers()[task.HeaderSvixID],
		"attempt", retried+1, "max_attempts", maxRetry+1, "outcome", outcome, "error", err.Error())
}

// metricLabel keeps the event_type label bounded: Resend's types are short dotted words; any
// other string (a corrupt or foreign task type) is reported as "other".
func metricLabel(eventType string) string {
	if len(eventType) > 64 {
		return "other"
	}
	for _, r := range eventType {
		if (r < 'a' || r > 'z') && r != '.' && r != '_' {
			return "other"
		}
	}
	return eventType
}

// asynqLogger routes asynq's own logs into the worker's slog logger.
type asynqLogger struct{ log *slog.Logger }

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...)) }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...)) }
func (l asynqLogger) Warn(args ...any)  { l.log.Warn(fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.log.Error(fmt.Sprint(args...)) }
func (l asynqLogger) Fatal(args ...any) { l.log.Error(fmt.Sprint(args...)); os.Exit(1) }
