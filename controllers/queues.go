package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
)

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
		opt = withTimeouts(opt, q.timeout)
		c, ok := opt.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, errors.New("unexpected redis client type")
		}
		m = &queueMonitor{client: c, inspector: asynq.NewInspectorFromRedisClient(c), users: map[types.NamespacedName]struct{}{}}
		q.byConfig[fp] = m
	}
	m.users[webhook] = struct{}{}
	q.configOf[webhook] = fp
	return m, nil
}

// withTimeouts bounds dialing and every command: the Inspector's calls take no context, so
// without socket timeouts a hanging Redis would hold a reconcile worker indefinitely.
func withTimeouts(opt asynq.RedisConnOpt, d time.Duration) asynq.RedisConnOpt {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = d, d, d
		return o
	case asynq.RedisFailoverClientOpt:
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = d, d, d
		return o
	}
	return opt
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
