package queuestore

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// Task is a task as the receiver enqueues it: what asynq.Client.Enqueue would write for a task
// with these fields and the options Queue, TaskID, MaxRetry, Timeout and Retention. The
// receiver writes it itself because asynq's client spends most of an enqueue's CPU outside
// Redis (a reflective protobuf encoding, a map per task, a random UUID it then discards);
// TestEnqueueMatchesAsynq holds the two writes equal field by field.
type Task struct {
	ID, Type, Queue string
	Payload         []byte
	Headers         []Header // encoded in this order; names must be distinct
	Retry           int      // attempts after the first (asynq.MaxRetry)
	Timeout         time.Duration
	Retention       time.Duration
}

// Header is one task header.
type Header struct{ Name, Value string }

// Field numbers of Asynq's TaskMessage (protobuf, internal/proto/asynq.proto of Asynq v0.26)
// that a pending task without deadline, uniqueness or group carries.
const (
	fieldType      = 1
	fieldPayload   = 2
	fieldID        = 3
	fieldQueue     = 4
	fieldRetry     = 5
	fieldTimeout   = 8
	fieldRetention = 12
	fieldHeaders   = 15 // map<string, string>: entries of key = 1, value = 2
)

// Encode returns the task message, encoded as protobuf in one allocation. Fields at their
// zero value are left out, as protobuf's own encoder does; Asynq keeps durations in whole
// seconds, rounded down.
func (t *Task) Encode() []byte { return t.AppendEncoded(nil) }

// AppendEncoded appends the task message (as Encode) to b, growing it at most once.
func (t *Task) AppendEncoded(b []byte) []byte {
	var size int
	str := func(num protowire.Number, s string) int {
		if s == "" {
			return 0
		}
		return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
	}
	num := func(num protowire.Number, v int64) int {
		if v == 0 {
			return 0
		}
		return protowire.SizeTag(num) + protowire.SizeVarint(uint64(v))
	}
	size += str(fieldType, t.Type) + str(fieldID, t.ID) + str(fieldQueue, t.Queue)
	if len(t.Payload) > 0 {
		size += protowire.SizeTag(fieldPayload) + protowire.SizeBytes(len(t.Payload))
	}
	size += num(fieldRetry, int64(int32(t.Retry))) + num(fieldTimeout, seconds(t.Timeout)) + num(fieldRetention, seconds(t.Retention))
	for _, h := range t.Headers {
		size += protowire.SizeTag(fieldHeaders) + protowire.SizeBytes(headerSize(h))
	}

	b = slices.Grow(b, size)
	appendStr := func(num protowire.Number, s string) {
		if s != "" {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	appendNum := func(num protowire.Number, v int64) {
		if v != 0 {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	appendStr(fieldType, t.Type)
	if len(t.Payload) > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Payload)
	}
	appendStr(fieldID, t.ID)
	appendStr(fieldQueue, t.Queue)
	appendNum(fieldRetry, int64(int32(t.Retry)))
	appendNum(fieldTimeout, seconds(t.Timeout))
	appendNum(fieldRetention, seconds(t.Retention))
	for _, h := range t.Headers {
		b = protowire.AppendTag(b, fieldHeaders, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerSize(h)))
		// A map entry writes key and value even when empty, as protobuf's encoder does.
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, h.Name)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, h.Value)
	}
	return b
}

func headerSize(h Header) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(h.Name)) + protowire.SizeTag(2) + protowire.SizeBytes(len(h.Value))
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// enqueueSource writes a pending task unless its id has a task hash already (queued, running,
// completed within its retention, or dead-lettered): the layout of Asynq's own enqueue, so
// that an Asynq server takes it like any other task. Returns 1 when written, 0 for a duplicate.
//
// KEYS[1] asynq task hash, KEYS[2] asynq pending; ARGV[1] message, ARGV[2] id, ARGV[3] now ns
const enqueueSource = `
if redis.call("EXISTS", KEYS[1]) == 1 then
	return 0
end
redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "pending", "pending_since", ARGV[3])
redis.call("LPUSH", KEYS[2], ARGV[2])
return 1`

var enqueueScript = redis.NewScript(enqueueSource)

// EnqueueCmd returns the command that enqueues t (it is not sent): an EVALSHA, which Redis
// answers with a NOSCRIPT error until it has seen the script; then send EnqueueEvalCmd
// instead. Its result is 1 when the task was written, 0 when its id already had a task.
// msg is t's message (t.Encode, or t.AppendEncoded into a buffer of the caller's, which must
// not be reused until the command's result is in).
func EnqueueCmd(ctx context.Context, t *Task, msg []byte, now time.Time) *redis.Cmd {
	c := enqueueCall(t, msg, now)
	return redis.NewCmd(ctx, "evalsha", enqueueScript.Hash(), len(c.keys), c.keys[0], c.keys[1], c.args[0], c.args[1], c.args[2])
}

// enqueueCall is the keys and arguments of enqueueScript for t, whose message is msg.
func enqueueCall(t *Task, msg []byte, now time.Time) scriptCall {
	return scriptCall{
		keys: []string{TaskKey(t.Queue, t.ID), PendingKey(t.Queue)},
		args: []any{msg, t.ID, strconv.FormatInt(now.UnixNano(), 10)},
	}
}

// EnqueueEvalCmd is cmd (from EnqueueCmd) as an EVAL carrying the script itself.
func EnqueueEvalCmd(ctx context.Context, cmd *redis.Cmd) *redis.Cmd {
	args := cmd.Args()
	return redis.NewCmd(ctx, append([]any{"eval", enqueueSource}, args[2:]...)...)
}

// IsNoScript reports whether err says Redis does not have a script (send it, or load it).
func IsNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }

// QueuesKey is the Redis set Asynq lists its queues in (Inspector, the operator's figures).
const QueuesKey = "asynq:queues"
