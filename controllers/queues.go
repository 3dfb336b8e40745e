package controllers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
)

// queueObservation is what one look at Redis said about a webhook's queue.
type queueObservation struct {
	reachable, durable metav1.Condition
	// sink is the SinkAvailable condition from the workers' reports; empty without spec.worker.
	sink    metav1.Condition
	figures *v1alpha1.QueueStatus // nil: unknown this time (keep the last figures)
	// drained are the previous shard counts whose queues are empty and forgotten, so that
	// status.queue.previousShards may drop them.
	drained []int
}

// observeQueue PINGs Redis with the configured credentials and reads the queue's figures, the
// workers' sink reports and (rarely) Redis' durability settings.
func (r *Reconciler) observeQueue(ctx context.Context, rw *v1alpha1.ResendWebhook, secrets *secretReader) queueObservation {
	key := client.ObjectKeyFromObject(rw)
	unknownSink := func(why string) metav1.Condition {
		if rw.Spec.Worker == nil {
			return metav1.Condition{}
		}
		return metav1.Condition{Type: v1alpha1.ConditionSinkAvailable, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNoReports, Message: why}
	}
	cfg, bad := secrets.redisConfig(ctx, rw)
	if bad != nil {
		r.queues.release(key)
		return queueObservation{
			reachable: *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonCredentials, bad.Message),
			durable:   durabilityUnknown("the Redis credentials are unavailable"),
			sink:      unknownSink("the Redis credentials are unavailable"),
		}
	}
	mon, err := r.queues.get(key, cfg)
	if err != nil {
		return queueObservation{
			reachable: *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonInvalidRedisConfig, bounded.Text(err.Error(), 256)),
			durable:   durabilityUnknown("the Redis settings are invalid"),
			sink:      unknownSink("the Redis settings are invalid"),
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.RedisTimeout)
	defer cancel()
	read, err := mon.read(ctx, render.Layout(rw), rw.Spec.Worker != nil)
	if err != nil {
		class := redisErrorClass(err)
		// The raw error names addresses: the operator's own debug log only, never the status
		// a tenant reads (it would make the operator a port scanner).
		ctrl.LoggerFrom(ctx).V(1).Info("redis unreachable", "class", class, "error", err.Error())
		return queueObservation{
			reachable: *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonUnreachable, "Redis unreachable: "+class),
			durable:   mon.durable.last("Redis is unreachable"),
			sink:      unknownSink("Redis is unreachable, so the workers' reports cannot be read"),
		}
	}
	setQueueMetrics(key, read.figures)
	obs := queueObservation{
		reachable: metav1.Condition{Type: v1alpha1.ConditionQueueReachable, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReachable,
			Message: fmt.Sprintf("queue %q reachable", rw.QueueName())},
		durable: mon.durable.get(ctx, mon.client, r.opts.QueueStatusInterval),
		figures: &read.figures,
		drained: read.drained,
	}
	if rw.Spec.Worker != nil {
		obs.sink = sinkCondition(read.sink)
	}
	return obs
}

// sinkCondition is SinkAvailable from the workers' fresh reports: False while any worker's
// circuit breaker holds deliveries, Unknown while no worker reports (none running yet, or
// every breaker switched off), True otherwise.
func sinkCondition(reports []queuestore.SinkReport) metav1.Condition {
	var open, active []queuestore.SinkReport
	for _, rep := range reports {
		switch {
		case rep.Open():
			open = append(open, rep)
			active = append(active, rep)
		case rep.State == queuestore.SinkClosed:
			active = append(active, rep)
		}
	}
	switch {
	case len(open) > 0:
		first := slices.MinFunc(open, func(a, b queuestore.SinkReport) int { return a.Since.Compare(b.Since) })
		class := cmp.Or(first.ErrorClass, "sink-down failures")
		return *falseCond(v1alpha1.ConditionSinkAvailable, v1alpha1.ReasonSinkUnavailable, fmt.Sprintf(
			"%d of %d workers hold deliveries since %s: %s; events stay queued without spending attempts",
			len(open), len(active), first.Since.UTC().Format(time.RFC3339), class))
	case len(active) == 0 && len(reports) > 0:
		return metav1.Condition{Type: v1alpha1.ConditionSinkAvailable, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNoReports,
			Message: "the workers run without a circuit breaker (spec.worker.circuitBreaker.enabled: false)"}
	case len(active) == 0:
		return metav1.Condition{Type: v1alpha1.ConditionSinkAvailable, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNoReports,
			Message: "no worker has reported on its sink yet"}
	}
	return metav1.Condition{Type: v1alpha1.ConditionSinkAvailable, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSinkReachable,
		Message: fmt.Sprintf("%d workers deliver to the sink", len(active))}
}

// Classes of Redis errors: what QueueReachable says instead of the error's text.
const (
	redisErrDNS     = "DNS lookup failed"
	redisErrRefused = "connection refused"
	redisErrTimeout = "timeout"
	redisErrAuth    = "authentication failed"
	redisErrTLS     = "TLS handshake failed"
	redisErrOther   = "connection failed"
)

// redisErrorClass sorts an error from dialing or querying Redis into one of a few classes.
func redisErrorClass(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &dnsErr):
		return redisErrDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return redisErrRefused
	case errors.As(err, &certErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert),
		strings.HasPrefix(msg, "tls: "), strings.Contains(msg, ": tls: "):
		return redisErrTLS
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return redisErrTimeout
	}
	for _, prefix := range []string{"NOAUTH", "WRONGPASS", "NOPERM", "ERR AUTH", "ERR invalid password", "ERR invalid username-password", "ERR Client sent AUTH"} {
		if strings.HasPrefix(msg, prefix) || strings.Contains(msg, ": "+prefix) {
			return redisErrAuth
		}
	}
	return redisErrOther
}

// queueMonitors shares one Redis client and asynq Inspector per distinct Redis configuration
// (address, credentials, TLS) among the webhooks using it, instead of dialing per reconcile.
// A client is closed when its last webhook goes away or moves to another configuration.
type queueMonitors struct {
	timeout  time.Duration // dial, read and write timeout of every monitoring connection
	mu       sync.Mutex
	byConfig map[string]*queueMonitor
	configOf map[types.NamespacedName]string
}

type queueMonitor struct {
	client    redis.UniversalClient
	inspector *asynq.Inspector
	users     map[types.NamespacedName]struct{}
	durable   durabilityCache
}

func newQueueMonitors(timeout time.Duration) *queueMonitors {
	return &queueMonitors{timeout: timeout, byConfig: map[string]*queueMonitor{}, configOf: map[types.NamespacedName]string{}}
}

// monitorPoolSize bounds the connections per Redis: reconciles are few and short.
const monitorPoolSize = 4

// get returns the monitor for cfg, registering webhook as one of its users.
func (q *queueMonitors) get(webhook types.NamespacedName, cfg redisconn.Config) (*queueMonitor, error) {
	cfg.PoolSize = monitorPoolSize
	fp := fingerprint(cfg)
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.configOf[webhook]; ok && old != fp {
		q.releaseLocked(webhook)
	}
	m := q.byConfig[fp]
	if m == nil {
		opt, err := cfg.ConnOpt()
		if err != nil {
			return nil, err
		}
		c, err := monitorClient(opt, q.timeout)
		if err != nil {
			return nil, err
		}
		m = &queueMonitor{client: c, inspector: asynq.NewInspectorFromRedisClient(c), users: map[types.NamespacedName]struct{}{}}
		q.byConfig[fp] = m
	}
	m.users[webhook] = struct{}{}
	q.configOf[webhook] = fp
	return m, nil
}

// monitorClient is a Redis client for opt that reports the state of Redis now: every dial and
// command is bounded by d (the Inspector's calls take no context, so without socket timeouts a
// hanging Redis would hold a reconcile worker indefinitely), and nothing is retried (a retry
// would outlast the reconcile's deadline and hide the error's class behind a timeout).
func monitorClient(opt asynq.RedisConnOpt, d time.Duration) (redis.UniversalClient, error) {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{
			Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			TLSConfig: o.TLSConfig, PoolSize: o.PoolSize,
			DialTimeout: d, ReadTimeout: d, WriteTimeout: d, MaxRetries: -1, DialerRetries: 1,
		}), nil
	case asynq.RedisClusterClientOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig, PoolSize: monitorPoolSize,
			DialTimeout: d, ReadTimeout: d, WriteTimeout: d, MaxRetries: -1, DialerRetries: 1,
		}), nil
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs, SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
			Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig, PoolSize: o.PoolSize,
			DialTimeout: d, ReadTimeout: d, WriteTimeout: d, MaxRetries: -1, DialerRetries: 1,
		}), nil
	}
	return nil, fmt.Errorf("unexpected redis connection option %T", opt)
}

// release unregisters webhook and closes its client when nobody else uses it.
func (q *queueMonitors) release(webhook types.NamespacedName) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(webhook)
}

func (q *queueMonitors) releaseLocked(webhook types.NamespacedName) {
	fp, ok := q.configOf[webhook]
	if !ok {
		return
	}
	delete(q.configOf, webhook)
	m := q.byConfig[fp]
	if m == nil {
		return
	}
	delete(m.users, webhook)
	if len(m.users) == 0 {
		_ = m.client.Close()
		delete(q.byConfig, fp)
	}
}

// open is the number of Redis clients held (for tests).
func (q *queueMonitors) open() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.byConfig)
}

func (q *queueMonitors) closeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for fp, m := range q.byConfig {
		_ = m.client.Close()
		delete(q.byConfig, fp)
	}
	clear(q.configOf)
}

// fingerprint identifies a configuration without keeping the password in a map key.
func fingerprint(c redisconn.Config) string {
	h := sha256.New()
	for _, s := range []string{c.URL, c.Password, c.SentinelMaster, strings.Join(c.SentinelAddrs, ","), strings.Join(c.ClusterAddrs, ","), string(c.CAPEM)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if c.InsecureSkipVerify {
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// queueReading is one read of a queue's state in Redis.
type queueReading struct {
	figures v1alpha1.QueueStatus
	sink    []queuestore.SinkReport
	drained []int
}

// read PINGs Redis and reads the figures of the layout's queues, added up (Asynq's plus the
// dead-letter store and the tasks a breaker parked), which previous shard counts have drained
// and, when asked, the workers' sink reports. A queue that does not exist yet (nothing was
// ever enqueued) has all-zero figures.
func (m *queueMonitor) read(ctx context.Context, layout shard.Layout, sinkReports bool) (queueReading, error) {
	out := queueReading{figures: v1alpha1.QueueStatus{Name: layout.Queue}}
	if err := m.client.Ping(ctx).Err(); err != nil {
		return out, err
	}
	stores := queuestore.NewSharded(m.client, layout)
	byQueue, err := stores.FiguresByQueue(ctx)
	if err != nil {
		return out, err
	}
	f := queuestore.SumFigures(byQueue)
	out.figures.Pending, out.figures.Active, out.figures.Scheduled, out.figures.Retry, out.figures.Archived = f.Pending, f.Active, f.Scheduled, f.Retry, f.Dead
	for _, p := range layout.Previous {
		if drained(layout, p, byQueue) {
			out.drained = append(out.drained, p)
		}
	}
	if sinkReports {
		if out.sink, err = stores.Sinks().SinkReports(ctx); err != nil {
			return out, err
		}
	}
	return out, nil
}

// drained reports whether the queues only the earlier shard count previous used hold nothing:
// no task in any state, no dead letter, and no svix-id remembered for deduplication (completed
// tasks leave after the dedup window).
func drained(layout shard.Layout, previous int, byQueue map[string]queuestore.Figures) bool {
	for _, q := range layout.Draining(previous) {
		if !byQueue[q].Empty() {
			return false
		}
	}
	return true
}
