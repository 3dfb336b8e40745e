package render

import (
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
)

// flag renders one "--name=value" args element.
func flag(name, value string) string { return "--" + name + "=" + value }

// ReceiverArgs is the receiver's command line: the subcommand, then one element per
// setting. Secret values never appear here, only the paths of the files they are mounted at.
func ReceiverArgs(rw *v1alpha1.ResendWebhook) []string {
	rw = defaulted(rw)
	s := rw.Spec
	args := []string{
		"receiver",
		flag("listen", ":"+strconv.Itoa(WebhookPort)),
		flag("admin-listen", ":"+strconv.Itoa(AdminPort)),
		flag("webhook", rw.Namespace+"/"+rw.Name),
		flag("queue", rw.QueueName()),
		flag("secrets-dir", SigningDir),
	}
	args = append(args, shardArgs(rw)...)
	args = append(args, redisArgs(s.Queue.Redis)...)
	if len(s.Events) > 0 {
		events := make([]string, len(s.Events))
		for i, e := range s.Events {
			events[i] = string(e)
		}
		slices.Sort(events) // a reordered allowlist is the same configuration
		args = append(args, flag("events", strings.Join(events, ",")))
	}
	args = append(args,
		flag("max-attempts", strconv.Itoa(int(*s.Retry.MaxAttempts))),
		flag("max-duration", s.MaxDuration.Duration.String()),
		flag("dedup-window", s.Queue.DedupWindow.Duration.String()),
		flag("max-body-bytes", strconv.FormatInt(*s.Receiver.MaxBodyBytes, 10)),
		flag("tolerance", s.Receiver.Tolerance.Duration.String()),
	)
	if r := s.Queue.Redis; r.MinReplicas != nil && *r.MinReplicas > 0 { // 0 is the receiver's default
		timeout := v1alpha1.DefaultReplicaTimeout
		if r.ReplicaTimeout != nil {
			timeout = r.ReplicaTimeout.Duration
		}
		args = append(args,
			flag("min-replicas", strconv.Itoa(int(*r.MinReplicas))),
			flag("replica-timeout", timeout.String()),
		)
	}
	return args
}

// WorkerArgs is the worker's command line (docs/worker.md). It returns nil without spec.worker.
func WorkerArgs(rw *v1alpha1.ResendWebhook) []string {
	rw = defaulted(rw)
	s := rw.Spec
	if s.Worker == nil {
		return nil
	}
	args := []string{
		"worker",
		flag("admin-listen", ":"+strconv.Itoa(AdminPort)),
		flag("queue", rw.QueueName()),
	}
	args = append(args, shardArgs(rw)...)
	args = append(args, redisArgs(s.Queue.Redis)...)
	args = append(args,
		flag("concurrency", strconv.Itoa(int(*s.Worker.Concurrency))),
		flag("max-attempts", strconv.Itoa(int(*s.Retry.MaxAttempts))),
		flag("max-duration", s.MaxDuration.Duration.String()),
		flag("backoff-factor", strconv.Itoa(int(*s.Retry.Factor))),
		flag("min-backoff", s.Retry.MinBackoff.Duration.String()),
		flag("max-backoff", s.Retry.MaxBackoff.Duration.String()),
		flag("randomize", strconv.FormatBool(*s.Retry.Randomize)),
		flag("dedup-window", s.Queue.DedupWindow.Duration.String()),
	)
	args = append(args, breakerArgs(s.Worker.CircuitBreaker)...)
	if sink := s.Worker.Sink; sink != nil {
		args = append(args,
			flag("sink-url", sink.URL),
			flag("sink-timeout", sink.Timeout.Duration.String()),
		)
		if sink.SigningSecretRef != nil {
			args = append(args, flag("sink-secret-file", path.Join(SinkDir, SinkFile)))
		}
	}
	return args
}

// breakerArgs are the worker's circuit-breaker flags; a disabled breaker is threshold 0.
func breakerArgs(b v1alpha1.CircuitBreakerSpec) []string {
	if !*b.Enabled {
		return []string{flag("breaker-threshold", "0")}
	}
	return []string{
		flag("breaker-threshold", strconv.Itoa(int(*b.FailureThreshold))),
		flag("breaker-probe-interval", b.ProbeInterval.Duration.String()),
		flag("breaker-max-probe-interval", b.MaxProbeInterval.Duration.String()),
		flag("breaker-max-hold", b.MaxHold.Duration.String()),
	}
}

// Layout is how the webhook's events are spread over queues: spec.queue.shards, and the earlier
// counts in status.queue.previousShards whose queues still drain (the reconciler records a
// change of spec.queue.shards there before it renders).
func Layout(rw *v1alpha1.ResendWebhook) shard.Layout {
	prev := make([]int, len(rw.Status.Queue.PreviousShards))
	for i, p := range rw.Status.Queue.PreviousShards {
		prev[i] = int(p)
	}
	l, _ := (&shard.Flags{Shards: rw.Spec.Queue.EffectiveShards(), Previous: prev}).Layout(rw.QueueName())
	return l
}

// shardArgs are the shard flags both components share; none for one shard and nothing to drain.
func shardArgs(rw *v1alpha1.ResendWebhook) []string {
	l := Layout(rw)
	var args []string
	if l.Shards > 1 {
		args = append(args, flag("shards", strconv.Itoa(l.Shards)))
	}
	if len(l.Previous) > 0 {
		args = append(args, flag("previous-shards", (*shard.Counts)(&l.Previous).String()))
	}
	return args
}

// redisArgs are the redisconn flags both components share.
func redisArgs(r v1alpha1.RedisSpec) []string {
	args := []string{flag("redis-url", r.URL)}
	if r.PasswordSecretRef != nil {
		args = append(args, flag("redis-password-file", path.Join(RedisDir, RedisPassFile)))
	}
	if r.Sentinel != nil {
		args = append(args,
			flag("redis-sentinel-master", r.Sentinel.MasterName),
			flag("redis-sentinel-addrs", strings.Join(r.Sentinel.Addrs, ",")),
		)
	}
	if r.Cluster != nil {
		args = append(args, flag("redis-cluster-addrs", strings.Join(r.Cluster.Addrs, ",")))
	}
	if r.TLS != nil {
		if r.TLS.CASecretRef != nil {
			args = append(args, flag("redis-ca-file", path.Join(RedisCADir, RedisCAFile)))
		}
		if r.TLS.InsecureSkipVerify {
			args = append(args, flag("redis-insecure-skip-verify", "true"))
		}
	}
	return args
}
