package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/admin"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// Config is everything a Worker needs; the worker flags fill it (see Main).
type Config struct {
	// Redis says how to reach Redis (asynq.RedisClientOpt, RedisFailoverClientOpt, …).
	Redis asynq.RedisConnOpt
	// Queue is the Asynq queue the receiver enqueues to.
	Queue string
	// Concurrency is how many events are processed at once.
	Concurrency int
	// Retry is the retry schedule. Each task carries its own attempt limit (set by the
	// receiver); Retry.MaxAttempts is reported and used for nothing else.
	Retry RetryPolicy
	// MaxDuration bounds one attempt, on top of the Timeout each task carries.
	MaxDuration time.Duration
	// ShutdownGrace is how long in-flight attempts may run on after shutdown begins; what is
	// unfinished then is handed back to Redis and runs again later.
	ShutdownGrace time.Duration
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
)

func (c *Config) setDefaults() {
	c.Queue = cmp.Or(c.Queue, DefaultQueue)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.MaxDuration = cmp.Or(c.MaxDuration, DefaultMaxDuration)
	c.ShutdownGrace = cmp.Or(c.ShutdownGrace, DefaultShutdownGrace)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
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
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", c.Concurrency))
	}
	if c.MaxDuration < time.Second {
		errs = append(errs, fmt.Errorf("max duration %s: must be at least 1s", c.MaxDuration))
	}
	if c.ShutdownGrace < 0 || c.PollInterval < 0 {
		errs = append(errs, errors.New("shutdown grace and poll interval must not be negative"))
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
	return &Worker{cfg: cfg, log: cfg.Logger, reg: reg, metrics: newMetrics(reg)}, nil
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
// lets in-flight attempts run for up to ShutdownGrace and hands the rest back to Redis.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("worker: Run called twice")
	}
	w.running = true
	w.mu.Unlock()

	watcher, err := newQueueWatcher(w.cfg.Redis, w.cfg.Queue, w.metrics, w.log)
	if err != nil {
		return err
	}
	// Handlers get a context that outlives ctx: a SIGTERM must not abort attempts that the
	// grace period allows to finish. It is cancelled once asynq has handed unfinished tasks back.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	srv := asynq.NewServer(w.cfg.Redis, w.serverConfig(handlerCtx))
	if err := srv.Start(asynq.HandlerFunc(w.processTask)); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	w.log.Info("worker started", "queue", w.cfg.Queue, "concurrency", w.cfg.Concurrency,
		"max_attempts", w.cfg.Retry.MaxAttempts, "max_duration", w.cfg.MaxDuration.String())

	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { watcher.run(bgCtx) })
	adminErr := make(chan error, 1)
	if w.cfg.AdminListen != "" {
		bg.Go(func() {
			srv := admin.NewServer(admin.Handler(w.reg, watcher.ready))
			adminErr <- admin.Serve(bgCtx, w.log, "admin", w.cfg.AdminListen, srv, 5*time.Second, w.cfg.OnAdminListen)
		})
	}

	select {
	case <-ctx.Done():
	case err = <-adminErr: // e.g. the port is taken: stop processing too
	}
	w.log.Info("shutting down: no new attempts; in-flight ones may finish", "grace", w.cfg.ShutdownGrace.String())
	srv.Stop()
	srv.Shutdown()
	cancelHandlers()
	stopBg()
	bg.Wait()
	w.log.Info("worker stopped")
	return err
}

func (w *Worker) serverConfig(handlerCtx context.Context) asynq.Config {
	return asynq.Config{
		Concurrency:    w.cfg.Concurrency,
		Queues:         map[string]int{w.cfg.Queue: 1},
		BaseContext:    func() context.Context { return handlerCtx },
		RetryDelayFunc: w.cfg.Retry.RetryDelayFunc(),
		// A handler cancelled because this worker stops did not fail: asynq then retries the
		// task without counting an attempt.
		IsFailure:                func(err error) bool { return !errors.Is(err, context.Canceled) },
		ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
		ShutdownTimeout:          w.cfg.ShutdownGrace,
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

// processTask runs one attempt: bound it by MaxDuration, route it, record metrics. A panicking
// handler is recorded as a failure too (asynq turns the panic into an error and retries).
func (w *Worker) processTask(ctx context.Context, t *asynq.Task) (err error) {
	eventType, ok := task.EventType(t.Type())
	if !ok {
		eventType = t.Type()
	}
	ctx, cancel := withTimeoutIfSooner(ctx, w.cfg.MaxDuration)
	defer cancel()
	start := time.Now()
	w.metrics.inFlight.Inc()
	completed := false
	defer func() {
		w.metrics.inFlight.Dec()
		label := metricLabel(eventType)
		w.metrics.processed.WithLabelValues(label).Inc()
		outcome := "failure"
		if completed && err == nil {
			outcome = "success"
			w.metrics.succeeded.WithLabelValues(label).Inc()
		}
		w.metrics.duration.WithLabelValues(label, outcome).Observe(time.Since(start).Seconds())
	}()
	err = w.dispatch(ctx, t, eventType, ok)
	completed = true
	return w.limitAttempts(ctx, t, err)
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
