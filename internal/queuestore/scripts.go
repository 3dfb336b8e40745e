package queuestore

import "github.com/redis/go-redis/v9"

// The Lua scripts below change Asynq's keys and ours together. They follow the layout of
// Asynq v0.26 (internal/rdb): a task is the hash asynq:{q}:t:<id> with fields msg (the encoded
// task message), state and, while pending, pending_since; its id sits in the list or sorted
// set of its state. Only the fields named here are read or written; msg is copied as bytes,
// never decoded.

// writeDeadLetterScript stores a dead letter written by the worker on a task's final failure,
// before the error goes back to Asynq. It only writes while Asynq holds the task as active: if
// Asynq already moved it (deadline, lease expiry, shutdown hand-back), Asynq's own record of
// the task stands and the keeper absorbs it if it was archived.
//
// KEYS[1] asynq task hash, KEYS[2] record, KEYS[3] dead index
// ARGV[1] id, ARGV[2] failed-at ms, ARGV[3…] record field/value pairs
var writeDeadLetterScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "state") ~= "active" then
	return 0
end
redis.call("DEL", KEYS[2])
redis.call("HSET", KEYS[2], unpack(ARGV, 3))
redis.call("ZADD", KEYS[3], ARGV[2], ARGV[1])
return 1`)

// removeRecordScript deletes a record and its index entry.
//
// KEYS[1] record, KEYS[2] dead index; ARGV[1] id
var removeRecordScript = redis.NewScript(`
local n = redis.call("DEL", KEYS[1])
redis.call("ZREM", KEYS[2], ARGV[1])
return n`)

// absorbRecordedScript takes out of Asynq's archived set the ids that already have a record
// (the normal path: the worker wrote it before Asynq archived the task). Ids a breaker parked
// are left to the restore step. Returns {left, moved id, moved id, …}.
//
// KEYS[1] asynq archived, KEYS[2] held msgs; ARGV[1] record key prefix, ARGV[2] batch size
var absorbRecordedScript = redis.NewScript(`
local ids = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1)
local res = {0}
for _, id in ipairs(ids) do
	if redis.call("EXISTS", ARGV[1] .. id) == 1 and redis.call("HEXISTS", KEYS[2], id) == 0 then
		redis.call("ZREM", KEYS[1], id)
		table.insert(res, id)
	else
		res[1] = res[1] + 1
	end
end
return res`)

// absorbScript copies one task Asynq archived on its own into the store and takes it out of
// Asynq's archived set, atomically. A record that exists wins (the worker's is richer).
//
// KEYS[1] asynq archived, KEYS[2] record, KEYS[3] dead index, KEYS[4] held msgs
// ARGV[1] id, ARGV[2] failed-at ms, ARGV[3…] record field/value pairs
var absorbScript = redis.NewScript(`
if not redis.call("ZSCORE", KEYS[1], ARGV[1]) then
	return 0
end
if redis.call("HEXISTS", KEYS[4], ARGV[1]) == 1 then
	return 0
end
if redis.call("EXISTS", KEYS[2]) == 0 then
	redis.call("HSET", KEYS[2], unpack(ARGV, 3))
end
redis.call("ZADD", KEYS[3], "NX", ARGV[2], ARGV[1])
redis.call("ZREM", KEYS[1], ARGV[1])
return 1`)

// parkScript saves the raw message of a task this worker holds (state active) so it can be
// restored after the handler returned nil and Asynq completed it: its retried count is the one
// from before this attempt, so the attempt is not consumed.
//
// KEYS[1] asynq task hash, KEYS[2] held index, KEYS[3] held msgs; ARGV[1] id, ARGV[2] due ms
var parkScript = redis.NewScript(`
local state, msg = unpack(redis.call("HMGET", KEYS[1], "state", "msg"))
if state ~= "active" or not msg then
	return 0
end
redis.call("HSET", KEYS[3], ARGV[1], msg)
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
return 1`)

// restoreScript puts a parked task back in Asynq's pending list the way Asynq's enqueue does,
// once Asynq is done with the attempt that parked it (completed, archived, or hash gone). While
// the task is active (Asynq has not yet seen the handler return) it waits (-1). When Asynq has
// the task queued itself (pending, retry, scheduled: a shutdown hand-back or a recovery), or
// archived it with a record (a real dead letter), the parked copy is dropped (2). Restored: 1.
//
// KEYS[1] held index, KEYS[2] held msgs, KEYS[3] asynq task hash, KEYS[4] asynq pending,
// KEYS[5] asynq completed, KEYS[6] asynq archived, KEYS[7] record
// ARGV[1] id, ARGV[2] now (unix ns)
var restoreScript = redis.NewScript(`
local msg = redis.call("HGET", KEYS[2], ARGV[1])
if not msg then
	redis.call("ZREM", KEYS[1], ARGV[1])
	return 0
end
local state = redis.call("HGET", KEYS[3], "state")
if state == "active" then
	return -1
end
local drop = state == "pending" or state == "retry" or state == "scheduled" or state == "aggregating"
if state == "archived" and redis.call("EXISTS", KEYS[7]) == 1 then
	drop = true
end
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("HDEL", KEYS[2], ARGV[1])
if drop then
	return 2
end
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("ZREM", KEYS[6], ARGV[1])
redis.call("DEL", KEYS[3])
redis.call("HSET", KEYS[3], "msg", msg, "state", "pending", "pending_since", ARGV[2])
redis.call("LPUSH", KEYS[4], ARGV[1])
return 1`)

// dropPlaceholderScript deletes Asynq's task hash of a dead letter before a replay enqueues
// the id again, only when its state is archived: a live task (pending, active, …) is never
// touched. Returns 1 deleted, 0 no hash, -1 live task.
//
// KEYS[1] asynq task hash, KEYS[2] asynq archived; ARGV[1] id
var dropPlaceholderScript = redis.NewScript(`
local state = redis.call("HGET", KEYS[1], "state")
if state == "archived" then
	redis.call("ZREM", KEYS[2], ARGV[1])
	redis.call("DEL", KEYS[1])
	return 1
end
if not state then
	return 0
end
return -1`)

// deleteScript forgets a dead letter: record, index, and Asynq's hash when it is archived.
// Returns 1 when anything was deleted.
//
// KEYS[1] record, KEYS[2] dead index, KEYS[3] asynq task hash, KEYS[4] asynq archived
// ARGV[1] id
var deleteScript = redis.NewScript(`
local n = redis.call("DEL", KEYS[1])
redis.call("ZREM", KEYS[2], ARGV[1])
if redis.call("HGET", KEYS[3], "state") == "archived" then
	redis.call("ZREM", KEYS[4], ARGV[1])
	redis.call("DEL", KEYS[3])
	n = 1
end
return n`)

// countsScript returns {dead letters in the store, parked tasks, ids in Asynq's archived set
// that are neither recorded nor parked (not absorbed yet)}. Asynq keeps its archived set at
// most 10,000 long, and the keeper empties it every second or so.
//
// KEYS[1] dead index, KEYS[2] held index, KEYS[3] asynq archived, KEYS[4] held msgs
// ARGV[1] record key prefix
var countsScript = redis.NewScript(`
local n = 0
for _, id in ipairs(redis.call("ZRANGE", KEYS[3], 0, -1)) do
	if redis.call("EXISTS", ARGV[1] .. id) == 0 and redis.call("HEXISTS", KEYS[4], id) == 0 then
		n = n + 1
	end
end
return {redis.call("ZCARD", KEYS[1]), redis.call("ZCARD", KEYS[2]), n}`)
