package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/admin"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/exepages"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
)

const summary = "Verify Resend (Svix-signed) webhooks and enqueue them to Redis"

// Command is the "receiver" subcommand.
var Command = cli.Command{Name: "receiver", Summary: summary, Run: run}

// config is the parsed command line.
type config struct {
	listen, adminListen string
	queue, webhook      string
	secretsDir          string
	events              cli.StringList
	maxAttempts         int
	maxDuration         time.Duration
	dedupWindow         time.Duration
	maxBodyBytes        int64
	tolerance           time.Duration
	enqueueTimeout      time.Duration
	maxInFlight         int
	minReplicas         int
	replicaTimeout      time.Duration
	secretsRescan       time.Duration
	shutdownDelay       time.Duration
	shutdownGrace       time.Duration
	redisPoolSize       int
	enqueueBatching     bool
	logLevel            slog.Level
	redis               redisconn.Flags
	shards              shard.Flags
	layout              shard.Layout
}

func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (*config, error) {
	c := &config{}
	fs := cli.NewFlagSet("receiver", summary, stdout)
	fs.StringVar(&c.listen, "listen", ":8080", "address for webhooks (POST on any path)")
	fs.StringVar(&c.adminListen, "admin-listen", ":9090", "address for /healthz, /readyz and /metrics (never expose publicly)")
	fs.StringVar(&c.queue, "queue", "", "Asynq queue name (default: NAMESPACE.NAME from --webhook)")
	fs.StringVar(&c.webhook, "webhook", "", "NAMESPACE/NAME of the ResendWebhook, for metric labels and task headers")
	fs.StringVar(&c.secretsDir, "secrets-dir", "", "directory in which every file holds one whsec_… signing secret; rescanned while running (required)")
	fs.Var(&c.events, "events", "comma-separated event types to enqueue; others are answered 200 and counted (default: all)")
	fs.IntVar(&c.maxAttempts, "max-attempts", DefaultMaxAttempts, "attempts per event including the first (Asynq MaxRetry = this - 1), 1..25")
	fs.DurationVar(&c.maxDuration, "max-duration", DefaultMaxDuration, "time one attempt may run (Asynq Timeout)")
	fs.DurationVar(&c.dedupWindow, "dedup-window", DefaultDedupWindow, "how long a completed svix-id is remembered to drop duplicate deliveries (Asynq Retention)")
	fs.Int64Var(&c.maxBodyBytes, "max-body-bytes", DefaultMaxBodyBytes, "largest accepted body; larger ones get 413")
	fs.DurationVar(&c.tolerance, "tolerance", DefaultTolerance, "allowed distance between svix-timestamp and the local clock")
	fs.DurationVar(&c.enqueueTimeout, "enqueue-timeout", DefaultEnqueueTimeout, "bound of one enqueue to Redis; then 503")
	fs.IntVar(&c.maxInFlight, "max-in-flight", DefaultMaxInFlight, "webhook requests served at once; more get 503 before their body is read")
	fs.IntVar(&c.minReplicas, "min-replicas", 0, "Redis replicas each enqueue must reach (Redis WAIT) before the answer is 200; 0: the primary is enough")
	fs.DurationVar(&c.replicaTimeout, "replica-timeout", DefaultReplicaTimeout, "how long an enqueue waits for --min-replicas; then 503")
	fs.DurationVar(&c.secretsRescan, "secrets-rescan-interval", time.Second, "how often --secrets-dir is re-read (at most 2s)")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM: keep listening (answering 503, /readyz failing) this long so endpoints drop the pod")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 15*time.Second, "then: time in-flight requests get to finish before connections are closed")
	fs.IntVar(&c.redisPoolSize, "redis-pool-size", 64, "Redis connections of the process (enqueues and readiness pings share them)")
	fs.BoolVar(&c.enqueueBatching, "enqueue-batching", true, "send the enqueues of concurrent requests to Redis together, in one pipeline (each answer still waits for its own task); false: one round trip per request")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "debug logs every accepted webhook; info logs rejections; warn logs failures only")
	c.redis.Register(fs)
	c.shards.Register(fs)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	if c.secretsDir == "" {
		errs = append(errs, errors.New("--secrets-dir is required"))
	}
	if c.webhook != "" {
		ns, name, ok := strings.Cut(c.webhook, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("--webhook=%q is not NAMESPACE/NAME", c.webhook))
		} else if c.queue == "" {
			c.queue = ns + "." + name // the operator's default queue name
		}
	}
	if c.queue == "" {
		errs = append(errs, errors.New("--queue is required when --webhook is not set"))
	}
	var err error
	if c.layout, err = c.shards.Layout(c.queue); err != nil {
		errs = append(errs, err)
	}
	if c.maxAttempts < 1 || c.maxAttempts > 25 {
		errs = append(errs, fmt.Errorf("--max-attempts=%d is not within 1..25", c.maxAttempts))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"max-duration", c.maxDuration, time.Second},
		{"dedup-window", c.dedupWindow, time.Second},
		{"tolerance", c.tolerance, time.Second},
		{"enqueue-timeout", c.enqueueTimeout, time.Millisecond},
		{"replica-timeout", c.replicaTimeout, 10 * time.Millisecond},
		{"secrets-rescan-interval", c.secretsRescan, 10 * time.Millisecond},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("--%s=%s must be at least %s", d.name, d.v, d.min))
		}
	}
	if c.secretsRescan > 2*time.Second {
		errs = append(errs, fmt.Errorf("--secrets-rescan-interval=%s must be at most 2s", c.secretsRescan))
	}
	if c.replicaTimeout > maxReplicaTimeout {
		errs = append(errs, fmt.Errorf("--replica-timeout=%s must be at most %s", c.replicaTimeout, maxReplicaTimeout))
	}
	if c.minReplicas < 0 {
		errs = append(errs, fmt.Errorf("--min-replicas=%d must not be negative", c.minReplicas))
	}
	if c.maxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-in-flight=%d must be positive", c.maxInFlight))
	}
	if err := checkDedupWindow(c.dedupWindow, c.tolerance); err != nil {
		errs = append(errs, fmt.Errorf("--dedup-window=%s must be at least twice --tolerance=%s (%s): %w", c.dedupWindow, c.tolerance, 2*c.tolerance, err))
	}
	if c.shutdownDelay < 0 || c.shutdownGrace < 0 {
		errs = append(errs, errors.New("--shutdown-delay and --shutdown-grace must not be negative"))
	}
	if c.maxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("--max-body-bytes=%d must be positive", c.maxBodyBytes))
	}
	if c.redisPoolSize < 1 {
		errs = append(errs, fmt.Errorf("--redis-pool-size=%d must be positive", c.redisPoolSize))
	}
	return errors.Join(errs...)
}

// Bounds and defaults of the replica flags (the API's spec.queue.redis has the same).
const (
	DefaultReplicaTimeout = time.Second
	maxReplicaTimeout     = 10 * time.Second
	// redisReadTimeout is go-redis' default reply timeout, which a WAIT in a pipeline adds to.
	redisReadTimeout = 3 * time.Second
)

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return runWithHooks(ctx, args, getenv, stdout, hooks{})
}

// hooks let tests drive what production leaves to the clock.
type hooks struct {
	// endShutdownDelay, when closed, ends --shutdown-delay early.
	endShutdownDelay <-chan struct{}
}

func runWithHooks(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, hk hooks) error {
	c, err := parseFlags(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := cli.Logger(stdout, "receiver", c.logLevel)
	// go-redis reports every failed dial on stderr; the readiness probe already logs outages once.
	redis.SetLogger(redisLogger{log})
	return serve(ctx, c, log, hk)
}

// redisConnOpt maps the Redis flags (URL, password file, Sentinel, TLS) plus the pool size
// to an asynq connection option.
func (c *config) redisConnOpt() (asynq.RedisConnOpt, error) {
	rc, err := c.redis.Config()
	if err != nil {
		return nil, err
	}
	rc.PoolSize = c.redisPoolSize
	if c.minReplicas > 0 { // the WAIT travels in a pipeline, which keeps the plain read timeout
		rc.ReadTimeout = redisReadTimeout + c.replicaTimeout
	}
	return rc.ConnOpt()
}

// serve runs the receiver until ctx is done, then drains and shuts down within
// shutdownDelay + shutdownGrace.
func serve(ctx context.Context, c *config, log *slog.Logger, hk hooks) error {
	connOpt, err := c.redisConnOpt()
	if err != nil {
		return err
	}
	rdb, ok := connOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("unexpected redis client type")
	}
	defer func() { _ = rdb.Close() }()

	reg := NewRegistry()
	metrics := NewMetrics(reg, c.webhook)
	secrets, err := NewSecretsDir(c.secretsDir, log, metrics)
	if err != nil {
		return err
	}
	var enqueuer *Enqueuer
	if c.enqueueBatching || c.minReplicas > 0 {
		enqueuer, err = NewEnqueuer(rdb, EnqueuerOptions{Batch: c.enqueueBatching, MinReplicas: c.minReplicas, ReplicaTimeout: c.replicaTimeout, Metrics: metrics})
		if err != nil {
			return err
		}
	}
	redisHealth := &redisProbe{queues: c.layout.Current(), log: log, metrics: metrics}
	h, err := NewHandler(Options{
		Secrets: secrets, Queue: c.queue, Webhook: c.webhook, Events: c.events,
		Shards: c.layout.Shards, PreviousShards: c.layout.Previous, Redis: rdb,
		MaxAttempts: c.maxAttempts, MaxDuration: c.maxDuration, DedupWindow: c.dedupWindow,
		MaxBodyBytes: c.maxBodyBytes, Tolerance: c.tolerance, EnqueueTimeout: c.enqueueTimeout,
		MaxInFlight: c.maxInFlight, RedisHealth: redisHealth.failure, Enqueuer: enqueuer,
		Metrics: metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	ready := func(context.Context) error {
		switch {
		case h.Draining():
			return errors.New("shutting down")
		case secrets.Valid() == 0:
			return fmt.Errorf("no valid signing secret in %s", c.secretsDir)
		}
		return redisHealth.err()
	}
	log.Info("starting", "queue", c.queue, "webhook", c.webhook, "events", c.events, "max_attempts", c.maxAttempts,
		"max_duration", c.maxDuration.String(), "dedup_window", c.dedupWindow.String(), "tolerance", c.tolerance.String(),
		"max_in_flight", c.maxInFlight, "min_replicas", c.minReplicas, "replica_timeout", c.replicaTimeout.String(),
		"enqueue_batching", c.enqueueBatching, "shards", c.layout.Shards, "previous_shards", c.layout.Previous)

	exepages.ReleaseLogged(log)

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { secrets.Run(bg, c.secretsRescan) })
	wg.Go(func() { redisHealth.run(bg, rdb, time.Second) })
	defer func() { stopBG(); wg.Wait() }()

	// The webhook server stops at SIGTERM + shutdownDelay; the admin server after it, so
	// probes and metrics stay answerable while draining.
	webhookCtx, stopWebhook := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWebhook()
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	errc := make(chan error, 2)
	go func() {
		errc <- admin.Serve(adminCtx, log, "admin", c.adminListen, admin.NewServer(admin.Handler(reg, ready)), time.Second, nil)
	}()
	go func() {
		errc <- admin.Serve(webhookCtx, log, "webhook", c.listen, admin.NewServer(h), c.shutdownGrace, nil)
	}()

	var first error
	received := 0
	select {
	case first = <-errc: // a server failed to start or died: stop everything
		received++
		stopWebhook()
		stopAdmin()
	case <-ctx.Done():
		log.Info("draining: new webhooks get 503, readiness fails", "delay", c.shutdownDelay.String(), "grace", c.shutdownGrace.String())
		h.Drain()
		select {
		case <-time.After(c.shutdownDelay):
		case <-hk.endShutdownDelay:
		case first = <-errc:
			received++
		}
		stopWebhook()
	}
	for ; received < 2; received++ {
		if err := <-errc; first == nil {
			first = err
		}
		stopAdmin() // once the webhook server is done, the admin server may go too
	}
	log.Info("stopped")
	return first
}

// redisProbe pings Redis in the background so /readyz answers from a cached result instead of
// adding a round trip (and a possible 2 s wait) per probe.
type redisProbe struct {
	queues  []string
	log     *slog.Logger
	metrics *Metrics
	last    atomic.Pointer[error] // nil until the first ping: not ready
}

// err is why Redis does not count as reachable (for /readyz); not checked yet is a reason.
func (p *redisProbe) err() error {
	e := p.last.Load()
	if e == nil {
		return errors.New("redis not checked yet")
	}
	return *e
}

// failure is the last check's error: nil when it succeeded or none has completed yet, so that
// requests are answered 503 at once only on evidence of an outage.
func (p *redisProbe) failure() error {
	if e := p.last.Load(); e != nil {
		return *e
	}
	return nil
}

// check PINGs Redis and re-adds the queues to Asynq's queue set in the same round trip. The
// enqueuer adds one only once per process, so after Redis lost its data (restart without
// persistence) the queue would stay invisible to asynq's Inspector (and the operator's
// status figures) although tasks are enqueued and processed. SADD of a member is idempotent.
func (p *redisProbe) check(ctx context.Context, rdb redis.UniversalClient, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Ping(ctx)
		pipe.SAdd(ctx, queuestore.QueuesKey, p.queues)
		return nil
	})
	return err
}

func (p *redisProbe) run(ctx context.Context, rdb redis.UniversalClient, every time.Duration) {
	var wasUp *bool
	for {
		err := p.check(ctx, rdb, every)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("redis unreachable: %w", err)
		}
		p.last.Store(&err)
		up := err == nil
		p.metrics.setRedisUp(up)
		if wasUp == nil || *wasUp != up {
			if up {
				p.log.Info("redis reachable")
			} else {
				p.log.Error("redis unreachable", "error", err)
			}
			wasUp = &up
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// redisLogger sends go-redis' internal messages to the debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
	}
}
