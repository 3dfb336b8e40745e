package queuestore

import (
	"context"
	"crypto/sha1" //nolint:gosec // matches Redis' redis.sha1hex, used as a fingerprint only
	"encoding/hex"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// asynqPayloadField is the field number of the payload in Asynq's TaskMessage (protobuf).
const asynqPayloadField = 2

// withoutPayload returns Asynq's encoded task message without its payload field, leaving every
// other field (type, id, queue, headers, retry counts, error, …) byte for byte. It reports false
// for bytes it cannot walk, which are then left alone.
func withoutPayload(msg []byte) ([]byte, bool) {
	out := make([]byte, 0, len(msg))
	for rest := msg; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return nil, false
		}
		if num != asynqPayloadField {
			out = append(out, rest[:n+m]...)
		}
		rest = rest[n+m:]
	}
	return out, true
}

// slimMarkers drops the payload from the Asynq task hashes of absorbed dead letters: the hash
// only has to exist (it is the deduplication marker the receiver's enqueue runs into), and the
// record holds the payload, so keeping it twice would double the memory of every dead letter.
// A marker that changed since it was read, or is no longer archived, is left as it is.
func (s *Store) slimMarkers(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	msgs := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		msgs[i] = pipe.HGet(ctx, s.task(id), "msg")
	}
	_, _ = pipe.Exec(ctx) // a missing hash is redis.Nil: skipped below
	var calls []scriptCall
	for i, id := range ids {
		raw, err := msgs[i].Bytes()
		if err != nil {
			continue
		}
		slim, ok := withoutPayload(raw)
		if !ok || len(slim) == len(raw) {
			continue
		}
		sum := sha1.Sum(raw) //nolint:gosec // fingerprint, compared with redis.sha1hex
		calls = append(calls, scriptCall{keys: []string{s.task(id)}, args: []any{hex.EncodeToString(sum[:]), slim}})
	}
	if len(calls) == 0 {
		return nil
	}
	if _, err := runBatch(ctx, s.rdb, slimMarkerScript, calls); err != nil {
		return fmt.Errorf("slim dead-letter markers: %w", err)
	}
	return nil
}

// slimMarkerScript replaces an archived task's msg with its payload-less form when it still is
// the message that was read.
//
// KEYS[1] asynq task hash; ARGV[1] sha1 of the message read, ARGV[2] the message without payload
var slimMarkerScript = redis.NewScript(`
local state, msg = unpack(redis.call("HMGET", KEYS[1], "state", "msg"))
if state ~= "archived" or not msg or redis.sha1hex(msg) ~= ARGV[1] then
	return 0
end
redis.call("HSET", KEYS[1], "msg", ARGV[2])
return 1`)
