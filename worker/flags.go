package worker

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
)

// flags are the worker's command-line flags, shared by the built-in "worker"
// subcommand and Main, so the controller's rendered args work for a custom image too.
type flags struct {
	adminListen    string
	redis          redisconn.Flags
	queue          string
	concurrency    int
	maxAttempts    int
	maxDuration    time.Duration
	factor         int
	minBackoff     time.Duration
	maxBackoff     time.Duration
	randomize      bool
	sinkURL        string
	sinkTimeout    time.Duration
	sinkSecretFile string
	shutdownGrace  time.Duration
	pollInterval   time.Duration
	logLevel       slog.Level
	dedupWindow    time.Duration
	breaker        BreakerConfig
	shards         shard.Flags
}

func (f *flags) register(fs *flag.FlagSet) {
	d := DefaultRetryPolicy
	fs.StringVar(&f.adminListen, "admin-listen", ":9090", "address of /healthz, /readyz and /metrics")
	f.redis.Register(fs)
	f.shards.Register(fs)
	fs.StringVar(&f.queue, "queue", DefaultQueue, "Asynq queue to consume (the receiver's --queue)")
	fs.IntVar(&f.concurrency, "concurrency", DefaultConcurrency, "events processed at once")
	fs.IntVar(&f.maxAttempts, "max-attempts", d.MaxAttempts, "attempts per event including the first (receiver tasks carry their own limit; applied to tasks without a svix-id header)")
	fs.DurationVar(&f.maxDuration, "max-duration", DefaultMaxDuration, "time one attempt may take; longer attempts fail and are retried")
	fs.IntVar(&f.factor, "backoff-factor", d.Factor, "integer growth factor of the delay between attempts (>= 1)")
	fs.DurationVar(&f.minBackoff, "min-backoff", d.MinBackoff, "delay after the first failed attempt (before randomizing)")
	fs.DurationVar(&f.maxBackoff, "max-backoff", d.MaxBackoff, "upper bound of any delay between attempts")
	fs.BoolVar(&f.randomize, "randomize", d.Randomize, "multiply each delay by a random factor in [1, 2)")
	fs.StringVar(&f.sinkURL, "sink-url", "", "http(s) URL every event is POSTed to (required by the built-in worker)")
	fs.DurationVar(&f.sinkTimeout, "sink-timeout", 10*time.Second, "time one POST to the sink may take")
	fs.StringVar(&f.sinkSecretFile, "sink-secret-file", "", "file holding the whsec_… secret POSTs to the sink are signed with (re-read when it changes)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", DefaultShutdownGrace, "on SIGTERM, how long in-flight attempts may finish before they are handed back to the queue")
	fs.DurationVar(&f.pollInterval, "poll-interval", DefaultPollInterval, "how often an idle worker checks for new tasks and due retries")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "info logs lifecycle and every failed attempt; warn logs failures only")
	fs.DurationVar(&f.dedupWindow, "dedup-window", DefaultDedupWindow, "the receiver's --dedup-window: the retention a dead letter keeps for its replay")
	fs.IntVar(&f.breaker.Threshold, "breaker-threshold", DefaultBreakerThreshold, "consecutive sink-down failures (connection refused/reset, timeout, 429, 502, 503, 504) that open the circuit breaker; 0 disables it")
	fs.DurationVar(&f.breaker.ProbeInterval, "breaker-probe-interval", DefaultBreakerProbeInterval, "wait before the open breaker's first probe delivery; doubles after each failed probe")
	fs.DurationVar(&f.breaker.MaxProbeInterval, "breaker-max-probe-interval", DefaultBreakerMaxProbeInterval, "cap of the wait between probes (and of a sink's Retry-After)")
	fs.DurationVar(&f.breaker.MaxHold, "breaker-max-hold", DefaultBreakerMaxHold, "how long the open breaker holds events; after it they are delivered under the retry policy (and dead-lettered while the sink stays down)")
}

// parseFlags parses args (RWH_* env fallback) into a Config and the sink settings.
func parseFlags(name, summary string, args []string, getenv func(string) string, stdout io.Writer) (Config, SinkConfig, error) {
	var f flags
	fs := cli.NewFlagSet(name, summary, stdout)
	f.register(fs)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return Config{}, SinkConfig{}, err
	}
	grace := f.shutdownGrace
	if grace == 0 {
		grace = NoShutdownGrace // in Config, zero means the default
	}
	breaker := f.breaker
	breaker.Disabled = breaker.Threshold == 0
	cfg := Config{
		Queue:          f.queue,
		Shards:         f.shards.Shards,
		PreviousShards: f.shards.Previous,
		Concurrency:    f.concurrency,
		MaxDuration:    f.maxDuration,
		ShutdownGrace:  grace,
		DedupWindow:    f.dedupWindow,
		Breaker:        breaker,
		PollInterval:   f.pollInterval,
		AdminListen:    f.adminListen,
		Retry: RetryPolicy{MaxAttempts: f.maxAttempts, Factor: f.factor, MinBackoff: f.minBackoff,
			MaxBackoff: f.maxBackoff, Randomize: f.randomize},
		Logger: cli.Logger(stdout, "worker", f.logLevel),
	}
	sink := SinkConfig{URL: f.sinkURL, Timeout: f.sinkTimeout, SecretFile: f.sinkSecretFile, MaxConns: f.concurrency}
	var errs []error
	if f.queue == "" {
		errs = append(errs, errors.New("--queue is empty"))
	}
	if f.pollInterval <= 0 {
		errs = append(errs, errors.New("--poll-interval must be positive"))
	}
	if f.shutdownGrace < 0 {
		errs = append(errs, errors.New("--shutdown-grace must not be negative"))
	}
	if f.breaker.Threshold < 0 {
		errs = append(errs, errors.New("--breaker-threshold must not be negative"))
	}
	if f.dedupWindow < time.Second {
		errs = append(errs, errors.New("--dedup-window must be at least 1s"))
	}
	rc, err := f.redis.Config()
	if err == nil {
		cfg.Redis, err = rc.ConnOpt()
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	if f.sinkURL != "" {
		if err := sink.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return cfg, sink, errors.Join(errs...)
}
