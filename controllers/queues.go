package controllers

import (
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
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
)

// observeQueue PINGs Redis with the configured credentials, reads the queue's figures (and
// exports them as metrics), and says whether Redis keeps what it acknowledged (read at most once
// per queue-status interval per Redis).
func (r *Reconciler) observeQueue(ctx context.Context, rw *v1alpha1.ResendWebhook, secrets *secretReader) (reachable, durable metav1.Condition, figures *v1alpha1.QueueStatus) {
	key := client.ObjectKeyFromObject(rw)
	cfg, bad := secrets.redisConfig(ctx, rw)
	if bad != nil {
		r.queues.release(key)
		return *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonCredentials, bad.Message),
			durabilityUnknown("the Redis credentials are unavailable"), nil
	}
	mon, err := r.queues.get(key, cfg)
	if err != nil {
		return *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonInvalidRedisConfig, truncate(err.Error(), 256)),
			durabilityUnknown("the Redis settings are invalid"), nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.RedisTimeout)
	defer cancel()
	fig, err := mon.figures(ctx, rw.QueueName())
	if err != nil {
		class := redisErrorClass(err)
		// The raw error names addresses: the operator's own debug log only, never the status
		// a tenant reads (it would make the operator a port scanner).
		ctrl.LoggerFrom(ctx).V(1).Info("redis unreachable", "class", class, "error", err.Error())
		return *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonUnreachable, "Redis unreachable: "+class),
			mon.durable.last("Redis is unreachable"), nil
	}
	setQueueMetrics(key, fig)
	return metav1.Condition{Type: v1alpha1.ConditionQueueReachable, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReachable,
		Message: fmt.Sprintf("queue %q reachable", rw.QueueName())}, mon.durable.get(ctx, mon.client, r.opts.QueueStatusInterval), &fig
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
	for _, s := range []string{c.URL, c.Password, c.SentinelMaster, strings.Join(c.SentinelAddrs, ","), string(c.CAPEM)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if c.InsecureSkipVerify {
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// figures PINGs Redis and reads the queue's sizes. A queue that does not exist yet (nothing was
// ever enqueued) has all-zero figures.
func (m *queueMonitor) figures(ctx context.Context, queue string) (v1alpha1.QueueStatus, error) {
	qs := v1alpha1.QueueStatus{Name: queue}
	if err := m.client.Ping(ctx).Err(); err != nil {
		return qs, err
	}
	info, err := m.inspector.GetQueueInfo(queue)
	if err != nil {
		queues, qerr := m.inspector.Queues()
		if qerr == nil && !slices.Contains(queues, queue) {
			return qs, nil
		}
		return qs, err
	}
	qs.Pending = int64(info.Pending)
	qs.Active = int64(info.Active)
	qs.Scheduled = int64(info.Scheduled)
	qs.Retry = int64(info.Retry)
	qs.Archived = int64(info.Archived)
	return qs, nil
}
