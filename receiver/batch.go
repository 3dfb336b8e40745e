package receiver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
)

// Enqueuer writes the handler's tasks to Redis: one enqueue script per request
// (queuestore.EnqueueCmd), answered 1 when the task was written and 0 when its svix-id
// already had one. It can do two things more.
//
// Batching sends the scripts of concurrent requests together in one pipeline: one round trip,
// one write and one read for all of them. It never waits for company: a script is sent at once
// when fewer than maxPipelines pipelines are in flight; scripts that arrive while they all are
// wait for the first to finish and then go together (group commit). So a lone request takes the
// same single round trip as without batching, and batches grow with the load. Each request
// still gets its own script's answer: its own 200, its own duplicate (a second script for the
// same svix-id in one pipeline finds the first one's task), its own error.
//
// Replica acknowledgement (--min-replicas) makes a 200 mean "on at least N replicas". Redis
// WAIT counts the replicas that acknowledged the writes of the connection it is sent on, and
// go-redis takes a connection from the pool per command; so every pipeline (with batching off:
// one per request) ends with
//
//	INCR <marker>   a write of this connection after the tasks' own, so that the WAIT also
//	                covers a task written earlier on another connection (a duplicate, whose
//	                script wrote nothing now; e.g. a delivery that got 503 for lack of replicas)
//	WAIT N timeout  replication offsets are ordered, so this covers all the writes before it
//
// and one WAIT covers a whole batch. On a Redis Cluster (a *redis.ClusterClient) go-redis splits
// the scripts' pipeline by node, and a WAIT counts only the replicas of the node it runs on:
// there the INCR and WAIT follow the pipeline, on each node that took a script (waitPerNode).
type Enqueuer struct {
	rdb            redis.UniversalClient
	batch          bool
	minReplicas    int
	replicaTimeout time.Duration
	metrics        *Metrics
	published      sync.Map // queue → true once it is in Asynq's queue set

	mu      sync.Mutex
	sending int        // pipelines in flight (at most maxPipelines)
	queue   []*pending // scripts waiting for a pipeline, oldest first
}

// EnqueuerOptions configure NewEnqueuer.
type EnqueuerOptions struct {
	// Batch sends the enqueues of concurrent requests together (--enqueue-batching).
	Batch bool
	// MinReplicas > 0 makes every 200 wait until the task is on that many replicas.
	MinReplicas int
	// ReplicaTimeout bounds the WAIT (at least 1ms; WAIT's 0 would wait forever).
	ReplicaTimeout time.Duration
	// Metrics, when not nil, counts pipelines by flush reason and size.
	Metrics *Metrics
}

const (
	// maxPipelines is how many pipelines may be in flight at once. One keeps the batches
	// deepest: while it is in flight the next batch gathers. More measured no faster (the
	// benchmark section of docs/receiver.md).
	maxPipelines = 1
	// maxBatch and maxBatchBytes bound one pipeline (it always takes at least one script):
	// enough to amortise a round trip, small enough that Redis does not stall other clients
	// for long on one batch.
	maxBatch      = 128
	maxBatchBytes = 1 << 20
)

// NewEnqueuer returns an enqueuer writing through rdb, which must be the handler's
// Options.Redis. With MinReplicas > 0, rdb's read timeout must exceed ReplicaTimeout: go-redis
// extends it for a WAIT sent alone, not for one in a pipeline.
func NewEnqueuer(rdb redis.UniversalClient, o EnqueuerOptions) (*Enqueuer, error) {
	if o.MinReplicas < 0 || (o.MinReplicas > 0 && o.ReplicaTimeout < time.Millisecond) {
		return nil, fmt.Errorf("receiver: replica acknowledgement needs at least 1 replica and a timeout of at least 1ms, got %d and %s", o.MinReplicas, o.ReplicaTimeout)
	}
	return &Enqueuer{rdb: rdb, batch: o.Batch, minReplicas: o.MinReplicas, replicaTimeout: o.ReplicaTimeout, metrics: o.Metrics}, nil
}

// pending is one script on its way through a pipeline. A caller that gave up (its enqueue
// timeout) returns without reading script, which the pipeline may still be writing.
type pending struct {
	ctx    context.Context
	script *redis.Cmd
	size   int // approximate bytes of its arguments
	marker string
	wait   replicaWait
	// done receives once: nil when script (and wait) hold the result, or the batch this
	// caller must send (it is batch[0]) because the pipeline before it finished.
	done chan []*pending
}

// Enqueue writes t unless its id has a task already (then written is false). marker is the key
// of the replica acknowledgement (replicaMarkerKey of t's queue); wait is what it found.
func (e *Enqueuer) Enqueue(ctx context.Context, t *queuestore.Task, marker string) (written bool, wait replicaWait, err error) {
	if _, ok := e.published.Load(t.Queue); !ok {
		// As Asynq's own client does once per queue: Inspector and the operator find the
		// queue in this set (the receiver's Redis probe keeps re-adding it).
		if err := e.rdb.SAdd(ctx, queuestore.QueuesKey, t.Queue).Err(); err != nil {
			return false, wait, fmt.Errorf("register queue %s: %w", t.Queue, err)
		}
		e.published.Store(t.Queue, true)
	}
	buf := taskBuffers.Get().(*[]byte)
	msg := t.AppendEncoded((*buf)[:0])
	cmd := queuestore.EnqueueCmd(ctx, t, msg, time.Now())
	if wait, err = e.send1(ctx, cmd, marker); err == nil && cmd.Err() != nil && queuestore.IsNoScript(cmd.Err()) {
		cmd = queuestore.EnqueueEvalCmd(ctx, cmd) // Redis lost its script cache (a restart, a failover)
		wait, err = e.send1(ctx, cmd, marker)
	}
	if err != nil {
		// The script may still be in a pipeline in flight, its message not yet written: the
		// buffer is left to the garbage collector.
		return false, wait, err
	}
	if cap(msg) <= maxPooledTask {
		*buf = msg
		taskBuffers.Put(buf)
	}
	n, err := cmd.Int64()
	return n == 1, wait, err
}

// taskBuffers recycles encoded task messages once Redis has answered their script (go-redis is
// done with the arguments then).
var taskBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledTask: a larger message's buffer is left to the garbage collector.
const maxPooledTask = 64 << 10

// send1 sends one script, alone or with others, and returns once its result is in cmd, or with
// ctx's error when ctx ends first.
func (e *Enqueuer) send1(ctx context.Context, cmd *redis.Cmd, marker string) (replicaWait, error) {
	if !e.batch && e.minReplicas == 0 {
		_ = e.rdb.Process(ctx, cmd) // the error is cmd's
		return replicaWait{}, nil
	}
	p := &pending{ctx: ctx, script: cmd, size: argsSize(cmd.Args()), marker: marker, done: make(chan []*pending, 1)}
	if err := e.submit(ctx, p); err != nil {
		return replicaWait{}, err // p may still be in a pipeline in flight, its wait being written
	}
	return p.wait, nil
}

// submit sends p, alone or with others, and returns once p's result is in p, or with ctx's
// error when ctx ends first.
func (e *Enqueuer) submit(ctx context.Context, p *pending) error {
	if !e.batch { // replica acknowledgement only: a pipeline of its own
		e.send([]*pending{p}, flushAlone)
		return nil
	}
	e.mu.Lock()
	if e.sending < maxPipelines { // nothing to wait for: go at once (the queue is empty)
		e.sending++
		e.mu.Unlock()
		e.run([]*pending{p}, flushImmediate)
		return nil
	}
	e.queue = append(e.queue, p)
	e.mu.Unlock()
	select {
	case batch := <-p.done:
		if batch != nil {
			e.run(batch, flushQueued)
		}
		return nil
	case <-ctx.Done():
	}
	e.mu.Lock()
	if i := slices.Index(e.queue, p); i >= 0 { // not sent: withdraw it
		e.queue = slices.Delete(e.queue, i, i+1)
		e.mu.Unlock()
		return ctx.Err()
	}
	e.mu.Unlock()
	select {
	case batch := <-p.done: // done meanwhile, or this caller must send the next batch
		if batch != nil {
			e.run(batch, flushQueued) // the others wait for it; its own deadline is not theirs
		}
		return nil
	default: // in a pipeline in flight; its result no longer matters to this caller
		return ctx.Err()
	}
}

// run sends batch (batch[0] is the caller), hands the pipeline slot to the scripts that queued
// meanwhile, and then tells the batch's other callers their results are in.
func (e *Enqueuer) run(batch []*pending, reason flushReason) {
	e.send(batch, reason)
	e.mu.Lock()
	if len(e.queue) == 0 {
		e.sending--
	} else {
		next := e.takeBatch()
		next[0].done <- next // under mu: a caller that gives up sees it (submit)
	}
	e.mu.Unlock()
	for _, p := range batch[1:] {
		p.done <- nil
	}
}

// takeBatch removes the next batch from the queue: the oldest scripts, up to maxBatch of
// them and about maxBatchBytes (always at least one). Called with mu held.
func (e *Enqueuer) takeBatch() []*pending {
	n, size := 0, 0
	for n < len(e.queue) && n < maxBatch && (n == 0 || size+e.queue[n].size <= maxBatchBytes) {
		size += e.queue[n].size
		n++
	}
	batch := slices.Clone(e.queue[:n])
	e.queue = slices.Delete(e.queue, 0, n) // keeps the backing array: no allocation per batch
	return batch
}

// send runs the scripts of batch in one pipeline, followed by INCR marker and WAIT when
// replicas must acknowledge. The pipeline may run until the latest deadline of its callers:
// each caller stops waiting at its own.
func (e *Enqueuer) send(batch []*pending, reason flushReason) {
	ctx := context.WithoutCancel(batch[0].ctx)
	var deadline time.Time
	for _, p := range batch {
		d, ok := p.ctx.Deadline()
		if !ok {
			deadline = time.Time{}
			break
		}
		if d.After(deadline) {
			deadline = d
		}
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	cluster, isCluster := e.rdb.(*redis.ClusterClient)
	pipe := e.rdb.Pipeline()
	for _, p := range batch {
		_ = pipe.Process(ctx, p.script)
	}
	var marker *redis.IntCmd
	var wait *redis.IntCmd
	if e.minReplicas > 0 && !isCluster {
		marker = pipe.Incr(ctx, batch[0].marker)
		wait = redis.NewIntCmd(ctx, "wait", e.minReplicas, e.replicaTimeout.Milliseconds())
		_ = pipe.Process(ctx, wait)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	e.metrics.observeBatch(len(batch), reason)
	if isCluster && e.minReplicas > 0 {
		e.waitPerNode(ctx, cluster, batch)
		return
	}
	if wait == nil {
		return
	}
	w := replicaWait{ran: true, replica: wait.Val(), err: errors.Join(marker.Err(), wait.Err())}
	for _, p := range batch {
		// A script that did not run (NOSCRIPT: Enqueue retries with EVAL, which comes here again)
		// or failed reports its error; the WAIT proves nothing for it.
		if p.script.Err() == nil {
			p.wait = w
		}
	}
}

// waitPerNode is the replica acknowledgement on a Redis Cluster. A WAIT counts the replicas of
// the node it runs on only, and a batch may hold tasks of queues on several nodes; so each
// node that took a task gets its own INCR marker + WAIT (all nodes at once), and each script
// the answer of its node. A marker is hash-tagged with its queue, so it lives on the node of
// the queue's keys; one write per node is enough to cover all the scripts before it there. A
// marker on another node than its script's keys would make that WAIT prove nothing: it is
// reported as an error instead.
func (e *Enqueuer) waitPerNode(ctx context.Context, cluster *redis.ClusterClient, batch []*pending) {
	type node struct {
		client  *redis.Client
		marker  string // the first marker of the node's scripts: one write is enough
		pending []*pending
	}
	var nodes []*node
	for _, p := range batch {
		if p.script.Err() != nil {
			continue // as on one Redis: the script's error is the answer
		}
		client, err := nodeOf(ctx, cluster, p)
		if err != nil {
			p.wait = replicaWait{ran: true, err: err}
			continue
		}
		i := slices.IndexFunc(nodes, func(n *node) bool { return n.client.Options().Addr == client.Options().Addr })
		if i < 0 {
			i = len(nodes)
			nodes = append(nodes, &node{client: client, marker: p.marker})
		}
		nodes[i].pending = append(nodes[i].pending, p)
	}
	waitOn := func(n *node) {
		var marker, wait *redis.IntCmd
		_, _ = n.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			marker = pipe.Incr(ctx, n.marker)
			wait = redis.NewIntCmd(ctx, "wait", e.minReplicas, e.replicaTimeout.Milliseconds())
			return pipe.Process(ctx, wait)
		})
		w := replicaWait{ran: true, replica: wait.Val(), err: errors.Join(marker.Err(), wait.Err())}
		for _, p := range n.pending {
			p.wait = w
		}
	}
	if len(nodes) == 1 { // the usual case: no goroutine
		waitOn(nodes[0])
		return
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { waitOn(n) })
	}
	wg.Wait()
}

// nodeOf is the primary that holds p's marker, after checking that it also holds the first
// key of p's script (asynq's task hash, hash-tagged with the queue like the marker).
func nodeOf(ctx context.Context, cluster *redis.ClusterClient, p *pending) (*redis.Client, error) {
	args := p.script.Args() // evalsha|eval, sha|body, numkeys, keys…, args…
	if len(args) < 4 || fmt.Sprint(args[2]) == "0" {
		return nil, errors.New("the enqueue script names no key")
	}
	key, _ := args[3].(string)
	node, err := cluster.MasterForKey(ctx, p.marker)
	if err != nil {
		return nil, err
	}
	keyNode, err := cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	if keyNode.Options().Addr != node.Options().Addr {
		return nil, errors.New("the replica marker is not on the cluster node of the task's queue (it must be hash-tagged with the queue)")
	}
	return node, nil
}

// argsSize approximates the bytes a command's arguments take on the wire.
func argsSize(args []any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		default:
			n += 8
		}
	}
	return n
}

// flushReason says why a pipeline was sent when it was.
type flushReason int

const (
	// flushImmediate: no pipeline was in flight, so the script went at once, alone.
	flushImmediate flushReason = iota
	// flushQueued: the scripts waited for the pipeline before them and went together.
	flushQueued
	// flushAlone: batching is off; one request's script with its replica WAIT.
	flushAlone
	numFlushReasons
)

var flushReasons = [numFlushReasons]string{"immediate", "queued", "unbatched"}
