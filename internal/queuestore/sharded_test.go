package queuestore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Each lists the dead letters of every shard newest failure first across them, pages through
// more than one index page per shard, honours offset and limit, and leaves out records removed
// after their index entry was read.
func TestEachMergesShardsNewestFirst(t *testing.T) {
	rdb := testutil.StartRedis(t).Client(t)
	ctx := context.Background()
	layout := shard.Layout{Queue: "ns.merge", Shards: 3, Previous: []int{1}}
	sharded := NewSharded(rdb, layout)
	stores := sharded.Stores()

	// 1,300 dead letters, failed a millisecond apart, dealt unevenly over the four queues.
	const n = 1300
	base := time.UnixMilli(1_790_000_000_000)
	storeOf := func(i int) int { return (i * i) % len(stores) }
	var want []string // newest first
	for i := range n {
		id := fmt.Sprintf("msg_%04d", i)
		st := stores[storeOf(i)]
		failed := base.Add(time.Duration(i) * time.Millisecond)
		if i == 7 {
			failed = base.Add(8 * time.Millisecond) // a tie with msg_0008
		}
		r := Record{ID: id, TaskType: "resend:email.bounced", Attempts: 3, MaxAttempts: 3, LastError: "sink answered 500", FailedAt: failed}
		if err := rdb.HSet(ctx, st.record(id), r.fields()...).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.ZAdd(ctx, st.k.dead, redis.Z{Score: float64(failed.UnixMilli()), Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	slices.Reverse(want)
	if storeOf(7) < storeOf(8) { // on the tie, the earlier store goes first
		i := slices.Index(want, "msg_0008")
		want[i], want[i+1] = want[i+1], want[i]
	}
	each := func(offset, limit int) []string {
		t.Helper()
		var got []string
		err := sharded.Each(ctx, offset, limit, func(r Record) error {
			if sharded.Of(r.Queue) == nil || r.LastError != "sink answered 500" {
				return fmt.Errorf("record %+v", r)
			}
			got = append(got, r.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := each(0, 0); !slices.Equal(got, want) {
		t.Fatalf("all: %d ids, first %v; want %d newest first, first %v", len(got), got[:min(5, len(got))], len(want), want[:5])
	}
	if got := each(600, 50); !slices.Equal(got, want[600:650]) {
		t.Fatalf("offset 600 limit 50: %v", got)
	}
	if got := each(n-2, 10); !slices.Equal(got, want[n-2:]) {
		t.Fatalf("the last page: %v", got)
	}

	// A record gone since (replayed or deleted): not listed, the rest still in order.
	if err := rdb.Del(ctx, stores[storeOf(n-2)].record(want[1])).Err(); err != nil { // want[1] is msg_1298
		t.Fatal(err)
	}
	if got := each(0, 3); !slices.Equal(got, []string{want[0], want[2]}) {
		t.Fatalf("with a record gone: %v", got)
	}
}
