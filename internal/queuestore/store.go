// Package queuestore keeps the per-queue state the worker needs beside Asynq's, in the same
// Redis: the dead-letter store, the tasks a worker's circuit breaker parked, and each worker's
// report of its sink. Every key is hash-tagged with the queue exactly like Asynq's
// ("rwh:{<queue>}:…" next to "asynq:{<queue>}:…"), so one Lua script may touch Asynq's keys and
// ours atomically, on one Redis or in one Redis Cluster slot.
//
// Keys of queue q:
//
//	rwh:{q}:dead        ZSET  svix-id → failed-at (unix ms): the dead-letter index
//	rwh:{q}:dead:<id>   HASH  the dead letter's full data (see Record)
//	rwh:{q}:held        ZSET  svix-id → due (unix ms): tasks parked by a circuit breaker
//	rwh:{q}:held:msg    HASH  svix-id → Asynq's raw task message at parking time
//	rwh:{q}:sink        HASH  worker id → JSON SinkReport
//
// A dead letter keeps Asynq's task hash "asynq:{q}:t:<id>" (its state stays "archived") but
// leaves Asynq's archived set, which Asynq trims to 10,000 entries and 90 days. The receiver's
// enqueue refuses an id whose task hash exists, so a re-delivery of a dead-lettered svix-id is
// still answered "duplicate" until the dead letter is replayed or deleted.
package queuestore

import (
	"context"
	"errors"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// BatchSize bounds the ids one Redis call (script or pipeline) handles, so that absorbing,
// restoring, replaying or deleting 100,000 entries never blocks Redis for long.
const BatchSize = 500

// Store is the state of one queue. It is cheap to create and safe for concurrent use; it does
// not own the Redis client.
type Store struct {
	rdb   redis.UniversalClient
	insp  *asynq.Inspector
	queue string
	k     keys
}

// keys are the Redis keys of one queue: ours and the Asynq ones our scripts touch.
type keys struct {
	dead, deadPrefix, held, heldMsg, sink              string
	task, pending, active, archived, completed, queues string
}

// PendingKey is Asynq's list of a queue's tasks that wait for a worker (KEDA scales the workers
// on its length). Tasks a circuit breaker parked are not in it.
func PendingKey(queue string) string { return asynqPrefix(queue) + "pending" }

// TaskKey is Asynq's hash of the task id in queue: while it exists, an enqueue of id is refused
// (the task is queued, remembered for deduplication, or a dead letter).
func TaskKey(queue, id string) string { return asynqPrefix(queue) + "t:" + id }

func asynqPrefix(queue string) string { return "asynq:{" + queue + "}:" }

func newKeys(queue string) keys {
	our, asq := "rwh:{"+queue+"}:", asynqPrefix(queue)
	return keys{
		dead: our + "dead", deadPrefix: our + "dead:", held: our + "held", heldMsg: our + "held:msg", sink: our + "sink",
		task: asq + "t:", pending: PendingKey(queue), active: asq + "active", archived: asq + "archived",
		completed: asq + "completed", queues: QueuesKey,
	}
}

// New returns the store of queue on rdb.
func New(rdb redis.UniversalClient, queue string) *Store {
	return &Store{rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb), queue: queue, k: newKeys(queue)}
}

// Queue is the queue's name.
func (s *Store) Queue() string { return s.queue }

func (s *Store) record(id string) string { return s.k.deadPrefix + id }
func (s *Store) task(id string) string   { return s.k.task + id }

// runBatch runs one call of script per element of calls in a single pipeline and returns the
// results in order. Scripts are sent by SHA; when Redis does not know one (first use, or after
// a restart) it is loaded and the pipeline sent again.
func runBatch(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 && isNoScript(cmds) {
			if lerr := script.Load(ctx, rdb).Err(); lerr != nil {
				return nil, lerr
			}
			continue
		}
		if err != nil && !allScriptReplies(cmds) {
			return cmds, err
		}
		return cmds, nil
	}
}

type scriptCall struct {
	keys []string
	args []any
}

func isNoScript(cmds []*redis.Cmd) bool {
	return slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return IsNoScript(c.Err()) })
}

// allScriptReplies reports whether every command got a reply (possibly redis.Nil or a script
// error reply), i.e. the pipeline itself did not fail on the connection.
func allScriptReplies(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			var rerr redis.Error
			if !errors.As(err, &rerr) {
				return false
			}
		}
	}
	return true
}
