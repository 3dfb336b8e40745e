// Package receiver is the webhook endpoint Resend posts to: it verifies the Svix signature,
// durably enqueues the event as an Asynq task and answers at once (docs/receiver.md).
package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// Options configure a Handler. Zero durations and limits take the defaults of the flags.
type Options struct {
	// Secrets are the signing secrets; required.
	Secrets SecretSource
	// Queue is the Asynq queue; required. With Shards > 1 it is the base of the shards' names.
	Queue string
	// Shards spreads the events over that many queues by svix-id (package shard); 0 means 1.
	Shards int
	// PreviousShards are earlier shard counts whose queues a re-delivery is looked up in
	// before it is enqueued to its current shard; they need Redis.
	PreviousShards []int
	// Redis is the client tasks are enqueued and re-deliveries looked up with; required. One
	// client (one pool) per process.
	Redis redis.UniversalClient
	// Webhook is "namespace/name", copied into every task's headers.
	Webhook string
	// Events is the allowlist of event types; empty means all.
	Events []string
	// MaxAttempts is the total attempts per task (Asynq MaxRetry = MaxAttempts-1).
	MaxAttempts int
	// MaxDuration is the time one attempt may run (Asynq Timeout).
	MaxDuration time.Duration
	// DedupWindow is how long a completed svix-id is remembered (Asynq Retention).
	DedupWindow time.Duration
	// MaxBodyBytes limits the request body.
	MaxBodyBytes int64
	// Tolerance is the allowed distance between svix-timestamp and now.
	Tolerance time.Duration
	// EnqueueTimeout bounds one enqueue call (then 503).
	EnqueueTimeout time.Duration
	// MaxInFlight bounds the requests served at once; more get 503 before their body is read.
	MaxInFlight int
	// RedisHealth, when not nil, reports the last background check of Redis: an error while it
	// failed (requests that would be enqueued get 503 at once), nil when it succeeded or has
	// not run yet.
	RedisHealth func() error
	// Enqueuer, when not nil, writes the tasks: it may batch the enqueues of concurrent
	// requests and/or make every 200 wait until the task is on enough Redis replicas (see
	// Enqueuer). It must be made from Redis. Nil means one script per request, unbatched.
	Enqueuer *Enqueuer
	// Metrics, when not nil, records every answer.
	Metrics *Metrics
	// Logger, when not nil, logs every answer (200s at debug level, see docs/receiver.md).
	Logger *slog.Logger
	// Now is the clock for the timestamp check and received-at; nil means time.Now.
	Now func() time.Time
}

// Defaults of the flags and of zero Options fields.
const (
	DefaultMaxAttempts    = 3
	DefaultMaxDuration    = 60 * time.Second
	DefaultDedupWindow    = 24 * time.Hour
	DefaultMaxBodyBytes   = 1 << 20
	DefaultTolerance      = 5 * time.Minute
	DefaultEnqueueTimeout = 5 * time.Second
	DefaultMaxInFlight    = 512
)

// retryAfterSeconds is sent with every 503; Svix's own schedule decides the actual retry.
const retryAfterSeconds = "5"

// Handler answers webhook POSTs on any path. It is safe for concurrent use.
type Handler struct {
	secrets        SecretSource
	webhook        string
	events         map[string]bool // nil: every type is wanted
	maxBody        int64
	tolerance      time.Duration
	enqueueTimeout time.Duration
	maxInFlight    int64
	inFlight       atomic.Int64
	redisHealth    func() error
	enqueuer       *Enqueuer
	layout         shard.Layout
	shards         []queueShard // of layout.Current(), by shard index
	rdb            redis.UniversalClient
	metrics        *Metrics
	log            *slog.Logger
	logLimits      [numOutcomes]logLimit
	now            func() time.Time
	draining       atomic.Bool
	// The task options: attempts after the first, the time one may run, and how long a
	// completed task (its svix-id) is kept.
	retry                    int
	maxDuration, dedupWindow time.Duration
}

// NewHandler validates o and returns the handler.
func NewHandler(o Options) (*Handler, error) {
	switch {
	case o.Redis == nil:
		return nil, errors.New("receiver: Options.Redis is nil")
	case o.Enqueuer != nil && o.Enqueuer.rdb != o.Redis:
		return nil, errors.New("receiver: Options.Enqueuer is not made from Options.Redis")
	case o.Secrets == nil:
		return nil, errors.New("receiver: Options.Secrets is nil")
	case o.Queue == "":
		return nil, errors.New("receiver: Options.Queue is empty")
	}
	layout, err := (&shard.Flags{Shards: cmpOr(o.Shards, 1), Previous: o.PreviousShards}).Layout(o.Queue)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	o.MaxAttempts = cmpOr(o.MaxAttempts, DefaultMaxAttempts)
	o.MaxDuration = cmpOr(o.MaxDuration, DefaultMaxDuration)
	o.DedupWindow = cmpOr(o.DedupWindow, DefaultDedupWindow)
	o.MaxBodyBytes = cmpOr(o.MaxBodyBytes, DefaultMaxBodyBytes)
	o.Tolerance = cmpOr(o.Tolerance, DefaultTolerance)
	o.EnqueueTimeout = cmpOr(o.EnqueueTimeout, DefaultEnqueueTimeout)
	o.MaxInFlight = cmpOr(o.MaxInFlight, DefaultMaxInFlight)
	if o.MaxAttempts < 1 || o.MaxDuration < time.Second || o.DedupWindow < time.Second || o.MaxBodyBytes < 1 || o.Tolerance < 0 || o.EnqueueTimeout < 0 || o.MaxInFlight < 1 {
		return nil, fmt.Errorf("receiver: invalid options: max attempts %d, max duration %s, dedup window %s, max body %d, tolerance %s, max in flight %d",
			o.MaxAttempts, o.MaxDuration, o.DedupWindow, o.MaxBodyBytes, o.Tolerance, o.MaxInFlight)
	}
	if err := checkDedupWindow(o.DedupWindow, o.Tolerance); err != nil {
		return nil, fmt.Errorf("receiver: dedup window %s must be at least twice the tolerance %s: %w", o.DedupWindow, o.Tolerance, err)
	}
	// Asynq keeps Timeout and Retention in whole seconds, rounding down; round up instead so an
	// attempt never gets less time, nor an id a shorter memory, than configured.
	o.MaxDuration = o.MaxDuration + (time.Second-o.MaxDuration%time.Second)%time.Second
	o.DedupWindow = o.DedupWindow + (time.Second-o.DedupWindow%time.Second)%time.Second
	if o.Enqueuer == nil {
		if o.Enqueuer, err = NewEnqueuer(o.Redis, EnqueuerOptions{}); err != nil {
			return nil, err
		}
	}
	h := &Handler{
		secrets:        o.Secrets,
		webhook:        o.Webhook,
		layout:         layout,
		rdb:            o.Redis,
		maxBody:        o.MaxBodyBytes,
		tolerance:      o.Tolerance,
		enqueueTimeout: o.EnqueueTimeout,
		maxInFlight:    int64(o.MaxInFlight),
		redisHealth:    o.RedisHealth,
		enqueuer:       o.Enqueuer,
		metrics:        o.Metrics,
		log:            o.Logger,
		now:            o.Now,
		retry:          o.MaxAttempts - 1,
		maxDuration:    o.MaxDuration,
		dedupWindow:    o.DedupWindow,
	}
	for _, q := range layout.Current() {
		h.shards = append(h.shards, queueShard{queue: q, marker: replicaMarkerKey(q)})
	}
	for i := range h.logLimits {
		h.logLimits[i].limiter = rate.NewLimiter(rejectLogRate, rejectLogBurst)
	}
	h.metrics.watchInFlight(&h.inFlight)
	if len(o.Events) > 0 {
		h.events = map[string]bool{}
		for _, e := range o.Events {
			h.events[e] = true
		}
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Drain makes every later request that would be enqueued answer 503 (shutdown).
func (h *Handler) Drain() {
	h.draining.Store(true)
	h.metrics.setDraining(true)
}

// Draining reports whether Drain was called.
func (h *Handler) Draining() bool { return h.draining.Load() }

// request carries what the log line of one request needs.
type request struct {
	id, eventType string
	err           error // why an enqueue failed
}

// ServeHTTP implements the status table of docs/receiver.md, in its order of precedence.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req request
	var o outcome
	// First of all, before a byte of the body is read: a request over the bound costs nothing.
	defer h.inFlight.Add(-1)
	if h.inFlight.Add(1) > h.maxInFlight {
		o = outOverloaded
	} else {
		body := bodyBuffers.Get().(*[]byte)
		o = h.serve(w, r, &req, body)
		if cap(*body) <= maxPooledBody {
			bodyBuffers.Put(body)
		}
	}
	h.answer(w, o)
	h.metrics.observe(o)
	h.logAnswer(r.Context(), o, &req, time.Since(start))
}

// bodyBuffers recycles request bodies: nothing refers to a body once serve returns (the task
// in Redis holds an encoded copy, the event type is a copy), and most events are a few KB.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody: a larger body's buffer is left to the garbage collector, so one big request
// does not pin its memory in the pool.
const maxPooledBody = 64 << 10

// serve reads the body into *buf (growing it as needed) and answers from it; the caller may
// reuse *buf once serve has returned.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, req *request, buf *[]byte) outcome {
	if r.Method != http.MethodPost {
		return outMethod
	}
	// 413 before anything else is looked at; never read more than maxBody+1 bytes.
	if r.ContentLength > h.maxBody {
		return outTooLarge
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, h.maxBody), r.ContentLength, (*buf)[:0])
	*buf = body
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return outTooLarge
		}
		return outReadError
	}

	id, ts, sig := r.Header.Get("svix-id"), r.Header.Get("svix-timestamp"), r.Header.Get("svix-signature")
	if id == "" || ts == "" || sig == "" {
		return outMissingHeaders
	}
	if !isToken(id) {
		return outMalformedID
	}
	req.id = id
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return outMalformedTimestamp
	}

	if d := h.now().Sub(time.Unix(unix, 0)); d > h.tolerance || d < -h.tolerance {
		return outTimestamp
	}
	verifiers := h.secrets.Verifiers()
	if len(verifiers) == 0 {
		return outNoSecrets
	}
	verifyStart := time.Now()
	verified := false
	for _, v := range verifiers { // any loaded secret may match: rotation
		// The headers as checked above; the same verdict as svix's VerifyIgnoringTimestamp.
		if v.Verify(id, unix, body, sig) {
			verified = true
			break
		}
	}
	h.metrics.observeVerify(time.Since(verifyStart))
	if !verified {
		return outSignature
	}

	// Only now, with the signature checked, is the body parsed.
	typ, failed, ok := eventType(body)
	if !ok {
		return failed
	}
	if !isToken(typ) {
		return outBadType
	}
	req.eventType = typ
	if h.events != nil && !h.events[req.eventType] {
		return outFiltered
	}
	if h.draining.Load() {
		return outDraining
	}
	if h.redisHealth != nil {
		if err := h.redisHealth(); err != nil { // no enqueue-timeout wait per request
			req.err = err
			return outRedisDown
		}
	}
	return h.enqueue(r.Context(), req, body, ts, sig)
}

func (h *Handler) enqueue(ctx context.Context, req *request, body []byte, ts, sig string) outcome {
	id := req.id
	sh := &h.shards[shard.Index(id, len(h.shards))]
	t := queuestore.Task{
		ID: id, Type: task.TypeName(req.eventType), Queue: sh.queue, Payload: body,
		Headers: []queuestore.Header{
			{Name: task.HeaderSvixID, Value: id},
			{Name: task.HeaderSvixTimestamp, Value: ts},
			{Name: task.HeaderSvixSignature, Value: sig},
			{Name: task.HeaderReceivedAt, Value: h.now().UTC().Format(time.RFC3339)},
			{Name: task.HeaderWebhook, Value: h.webhook},
		},
		Retry: h.retry, Timeout: h.maxDuration, Retention: h.dedupWindow,
	}
	// A client that hangs up must not abort an enqueue half-way: finish it, bounded.
	timeout := h.enqueueTimeout
	if h.enqueuer.waitsForReplicas() {
		timeout += h.enqueuer.replicaTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	start := time.Now()
	seen, err := h.seenInEarlierShards(ctx, id)
	written := false
	var wait replicaWait
	if err == nil && !seen {
		written, wait, err = h.enqueuer.Enqueue(ctx, &t, sh.marker)
	}
	h.metrics.observeEnqueue(time.Since(start))
	o := outEnqueued
	switch {
	case seen:
		return outDuplicate // queued, remembered or dead-lettered under an earlier layout
	case err != nil:
		req.err = err
		return outEnqueueFailed
	case !written:
		o = outDuplicate
	}
	if h.enqueuer.waitsForReplicas() {
		// Also for a duplicate: its task may sit on the primary only (an earlier 503).
		if err := h.enqueuer.checkReplicas(wait); err != nil {
			req.err = err
			return outReplicaShortfall
		}
	}
	return o
}

// queueShard is what the handler needs of one of its queues.
type queueShard struct {
	queue  string
	marker string // replicaMarkerKey of the queue
}

// replicaMarkerKey is the key each replica-acknowledged enqueue increments before its WAIT;
// hash-tagged with the queue, so that on a Redis Cluster it lives on the task's primary.
func replicaMarkerKey(queue string) string { return "rwh:{" + queue + "}:replica-ack" }

// seenInEarlierShards reports whether the event id already has a task in a queue that an
// earlier shard count sent it to: while webhook's shards change, a re-delivery must be
// answered as a duplicate rather than enqueued again on its new shard.
func (h *Handler) seenInEarlierShards(ctx context.Context, id string) (bool, error) {
	earlier := h.layout.EarlierQueuesFor(id)
	if len(earlier) == 0 {
		return false, nil
	}
	keys := make([]string, len(earlier))
	for i, q := range earlier {
		keys[i] = queuestore.TaskKey(q, id)
	}
	cmds, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Exists(ctx, k) // one key per command: the keys may live on different cluster nodes
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look up a re-delivery in earlier shards: %w", err)
	}
	for _, c := range cmds {
		if c.(*redis.IntCmd).Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// checkDedupWindow: a request is accepted up to the tolerance either side of its timestamp, so a
// replay of a delivery can arrive up to twice the tolerance after the delivery completed; its
// svix-id must still be remembered then.
func checkDedupWindow(dedupWindow, tolerance time.Duration) error {
	if dedupWindow < 2*tolerance {
		return errors.New("a replay signed within the tolerance could otherwise be enqueued again")
	}
	return nil
}

// readBody appends all of body to buf (empty, with whatever capacity it has), sized by
// Content-Length when it is known.
func readBody(body io.Reader, contentLength int64, buf []byte) ([]byte, error) {
	size := int64(512)
	if contentLength >= 0 {
		// +1 so EOF is seen without growing; capped so that a claimed Content-Length from an
		// unauthenticated client cannot reserve memory before its bytes arrive.
		size = min(contentLength+1, 64<<10)
	}
	if int64(cap(buf)) < size {
		buf = make([]byte, 0, size)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// isToken accepts 1–256 printable ASCII characters without spaces: svix ids ("msg_…") and
// event types ("email.bounced"). Anything else would end up in Redis keys and logs.
func isToken(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (h *Handler) answer(w http.ResponseWriter, o outcome) {
	hdr := w.Header()
	hdr["Content-Type"] = contentTypeJSON
	switch o.code() {
	case http.StatusServiceUnavailable:
		hdr["Retry-After"] = retryAfter
	case http.StatusMethodNotAllowed:
		hdr["Allow"] = allowPost
	}
	if o == outOverloaded {
		// Otherwise net/http would wait for the unread body (to keep the connection) before
		// answering: a slow client would hold the slot the bound just refused it.
		hdr["Connection"] = connectionClose
	}
	w.WriteHeader(o.code())
	_, _ = w.Write(outcomes[o].body)
}

// Pre-built header values: no allocation per request.
var (
	contentTypeJSON = []string{"application/json"}
	retryAfter      = []string{retryAfterSeconds}
	allowPost       = []string{http.MethodPost}
	connectionClose = []string{"close"}
)

// Rate of the log lines of one rate-limited reason (logLimited): a steady flood of forgeries
// or a Redis outage yields about one line a second per reason, each saying how many it stands for.
const (
	rejectLogRate  = rate.Limit(1) // lines per second
	rejectLogBurst = 10
)

// logLimit rate-limits the log lines of one outcome and counts the lines it held back.
type logLimit struct {
	limiter    *rate.Limiter
	suppressed atomic.Int64
}

// logLimited reports whether o's log lines are rate-limited: every outcome decided before a
// signature was verified (anyone can cause those, at any rate; they are still counted) and
// redis_down (the background probe logs the outage itself). New outcomes are limited unless
// listed here.
func (o outcome) logLimited() bool {
	switch o {
	case outEnqueued, outDuplicate, outFiltered, outBodyNotJSON, outNoType, outBadType,
		outDraining, outEnqueueFailed, outReplicaShortfall:
		return false
	}
	return true
}

// logAnswer logs one line per request: accepted ones (200) at debug, rejections at info and
// failures to enqueue at warn, so the default level costs nothing on the happy path.
// Never the body, secrets or signatures; the svix-id only once it is a well-formed token.
func (h *Handler) logAnswer(ctx context.Context, o outcome, req *request, latency time.Duration) {
	level := slog.LevelInfo
	switch o.code() {
	case http.StatusOK:
		level = slog.LevelDebug
	case http.StatusServiceUnavailable:
		level = slog.LevelWarn
	}
	if !h.log.Enabled(ctx, level) {
		return
	}
	var suppressed int64
	if o.logLimited() {
		l := &h.logLimits[o]
		if !l.limiter.AllowN(h.now(), 1) {
			l.suppressed.Add(1)
			h.metrics.observeSuppressed()
			return
		}
		suppressed = l.suppressed.Swap(0)
	}
	attrs := []slog.Attr{
		slog.String("svix_id", req.id),
		slog.String("event_type", req.eventType),
		slog.Int("status", o.code()),
		slog.String("reason", o.reason()),
		slog.Float64("latency_ms", float64(latency.Microseconds())/1000),
	}
	if req.err != nil {
		attrs = append(attrs, slog.String("error", req.err.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	h.log.LogAttrs(ctx, level, "webhook", attrs...)
}
