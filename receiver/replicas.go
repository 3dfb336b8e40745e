package receiver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplicaAck makes a 200 mean "on at least N Redis replicas". Redis WAIT counts the replicas
// that acknowledged the writes of the connection it is sent on, but the asynq client takes a
// connection from the pool per command. So a go-redis hook on the client asynq uses sends every
// enqueue script of a webhook request in one pipeline, on one connection, followed by
//
//	INCR <marker>   a write of this connection after the task's own, so that the WAIT also
//	                covers a task written earlier on another connection (a duplicate, whose
//	                script wrote nothing now; e.g. a delivery that got 503 for lack of replicas)
//	WAIT N timeout  replication offsets are ordered, so this covers both writes
//
// Commands without a request's replica wait in their context (pings, the queue set) are not
// touched.
type ReplicaAck struct {
	rdb         redis.UniversalClient
	minReplicas int
	timeout     time.Duration
}

// NewReplicaAck installs the hook on rdb, which must be the client the handler's asynq.Client
// was made from (asynq.NewClientFromRedisClient). rdb's read timeout must exceed timeout:
// go-redis extends it for a WAIT sent alone, not for one in a pipeline.
func NewReplicaAck(rdb redis.UniversalClient, minReplicas int, timeout time.Duration) (*ReplicaAck, error) {
	if minReplicas < 1 || timeout < time.Millisecond { // WAIT's timeout is in ms; 0 waits forever
		return nil, fmt.Errorf("receiver: replica acknowledgement needs at least 1 replica and a timeout of at least 1ms, got %d and %s", minReplicas, timeout)
	}
	a := &ReplicaAck{rdb: rdb, minReplicas: minReplicas, timeout: timeout}
	rdb.AddHook(a)
	return a, nil
}

// replicaWait travels in the context of one enqueue and carries the WAIT's answer back.
type replicaWait struct {
	marker  string // key the marker INCR writes
	ran     bool   // a WAIT followed a successful enqueue script
	replica int64  // replicas WAIT reported
	err     error  // the marker write or the WAIT failed
}

type replicaWaitKey struct{}

// errNoWait is a handler wired to a client without the hook: failing beats a 200 that lies.
var errNoWait = errors.New("no WAIT ran: the handler's asynq.Client is not made from the redis client passed to NewReplicaAck")

// check says why the enqueue that carried w is not acknowledged by enough replicas.
func (a *ReplicaAck) check(w *replicaWait) error {
	switch {
	case !w.ran:
		return errNoWait
	case w.err != nil:
		return fmt.Errorf("replica acknowledgement: %w", w.err)
	case w.replica < int64(a.minReplicas):
		return fmt.Errorf("%d of %d replicas acknowledged within %s", w.replica, a.minReplicas, a.timeout)
	}
	return nil
}

// DialHook implements redis.Hook.
func (a *ReplicaAck) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook.
func (a *ReplicaAck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook: it replaces an enqueue script sent for a request that
// waits for replicas with the pipeline script, INCR marker, WAIT.
func (a *ReplicaAck) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		w, ok := ctx.Value(replicaWaitKey{}).(*replicaWait)
		if !ok {
			return next(ctx, cmd)
		}
		if name := cmd.Name(); name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		pipe := a.rdb.Pipeline()
		_ = pipe.Process(ctx, cmd)
		marker := pipe.Incr(ctx, w.marker)
		wait := redis.NewIntCmd(ctx, "wait", a.minReplicas, a.timeout.Milliseconds())
		_ = pipe.Process(ctx, wait)
		_, _ = pipe.Exec(ctx) // each command carries its own error
		if cmd.Err() != nil {
			// Not run (NOSCRIPT: go-redis retries with EVAL, which comes here again) or failed:
			// the enqueue reports the error; this WAIT proves nothing.
			return cmd.Err()
		}
		w.ran, w.replica, w.err = true, wait.Val(), errors.Join(marker.Err(), wait.Err())
		return nil
	}
}
