package queuestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

const q = "ns.store"

type fixture struct {
	redis  *testutil.Redis
	rdb    *redis.Client
	store  *Store
	client *asynq.Client
	insp   *asynq.Inspector
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := testutil.StartRedis(t)
	rdb := r.Client(t)
	return &fixture{redis: r, rdb: rdb, store: New(rdb, q), client: asynq.NewClientFromRedisClient(rdb), insp: asynq.NewInspectorFromRedisClient(rdb)}
}

// enqueue puts a task on the queue the way the receiver does.
func (f *fixture) enqueue(t *testing.T, id string, maxAttempts int) {
	t.Helper()
	tk := asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), []byte(`{"type":"email.bounced","id":"`+id+`"}`),
		map[string]string{task.HeaderSvixID: id, task.HeaderWebhook: "ns/store", task.HeaderReceivedAt: "2026-01-02T03:04:05Z"})
	if _, err := f.client.Enqueue(tk, asynq.Queue(q), asynq.TaskID(id), asynq.MaxRetry(maxAttempts-1),
		asynq.Timeout(30*time.Second), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// serve runs a bare asynq server on the queue with handler until the test ends.
func (f *fixture) serve(t *testing.T, handler asynq.HandlerFunc) {
	t.Helper()
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: f.redis.Addr()}, asynq.Config{
		Concurrency: 2, Queues: map[string]int{q: 1}, TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 0 }, LogLevel: asynq.ErrorLevel,
	})
	if err := srv.Start(handler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

func (f *fixture) state(id string) string {
	return f.rdb.HGet(context.Background(), "asynq:{"+q+"}:t:"+id, "state").Val()
}

func (f *fixture) figures(t *testing.T) Figures {
	t.Helper()
	fig, err := f.store.Figures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fig
}

// The worker's path: record written while active, Asynq archives, the keeper absorbs; the id
// stays deduplicated; a replay gets a fresh budget; a second replay finds nothing.
func TestDeadLetterWriteAbsorbReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var written atomic.Bool
	f.serve(t, func(ctx context.Context, tk *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if written.Load() {
			return nil // the replayed task later: done
		}
		ok, err := f.store.WriteDeadLetter(ctx, Record{ID: id, TaskType: tk.Type(), Payload: tk.Payload(), Headers: tk.Headers(),
			Attempts: 2, MaxAttempts: 2, Timeout: 30 * time.Second, Retention: time.Hour,
			LastError: `Post "https://sink.example/hook/secret?token=abc": connection refused`})
		if err != nil || !ok {
			t.Errorf("WriteDeadLetter = %v, %v; want written", ok, err)
		}
		written.Store(true)
		return asynq.SkipRetry
	})
	f.enqueue(t, "msg_1", 2)
	testutil.EventuallyTrue(t, 10*time.Second, "archived by asynq", func() bool { return written.Load() && f.state("msg_1") == "archived" })
	if fig := f.figures(t); fig.Dead != 1 {
		t.Errorf("before absorb: dead = %d, want 1 (record and archived id counted once)", fig.Dead)
	}
	if n, err := f.store.Absorb(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Absorb = %d, %v", n, err)
	}
	if n := f.rdb.ZCard(ctx, "asynq:{"+q+"}:archived").Val(); n != 0 {
		t.Errorf("asynq archived set has %d ids after absorb", n)
	}
	if st := f.state("msg_1"); st != "archived" {
		t.Errorf("asynq hash state = %q, want archived (kept as dedup marker)", st)
	}
	// The marker keeps everything but the payload, and still decodes.
	if info, err := f.insp.GetTaskInfo(q, "msg_1"); err != nil || len(info.Payload) != 0 || info.ID != "msg_1" ||
		info.Type != "resend:email.bounced" || info.Headers[task.HeaderWebhook] != "ns/store" || info.MaxRetry != 1 {
		t.Errorf("slimmed marker decodes as %+v, %v", info, err)
	}
	if fig := f.figures(t); fig.Dead != 1 || fig.Pending != 0 {
		t.Errorf("figures after absorb = %+v", fig)
	}
	recs, err := f.store.List(ctx, 0, 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("List = %v, %v", recs, err)
	}
	r := recs[0]
	if r.ID != "msg_1" || r.EventType() != "email.bounced" || r.Webhook() != "ns/store" || r.Attempts != 2 || r.MaxAttempts != 2 ||
		r.Timeout != 30*time.Second || r.Retention != time.Hour || r.Payload != nil || r.FailedAt.IsZero() {
		t.Errorf("listed record = %+v", r)
	}
	if strings.Contains(r.LastError, "secret") || strings.Contains(r.LastError, "token") || !strings.Contains(r.LastError, "https://sink.example/…") {
		t.Errorf("stored error not cleaned: %q", r.LastError)
	}
	full, err := f.store.Get(ctx, "msg_1")
	if err != nil || string(full.Payload) != `{"type":"email.bounced","id":"msg_1"}` || full.Headers[task.HeaderSvixID] != "msg_1" {
		t.Fatalf("Get = %+v, %v", full, err)
	}
	// Dedup: the receiver's enqueue of the same svix-id conflicts.
	if _, err := f.client.Enqueue(asynq.NewTask("resend:email.bounced", nil), asynq.Queue(q), asynq.TaskID("msg_1")); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Errorf("re-delivery of a dead letter: %v, want ErrTaskIDConflict", err)
	}

	// Replay: a new task with the same id and a fresh budget; the record is gone.
	res, err := f.store.Replay(ctx, []string{"msg_1"}, ReplayOptions{MaxAttempts: 5})
	if err != nil || res.Replayed != 1 {
		t.Fatalf("Replay = %+v, %v", res, err)
	}
	if n, _ := f.store.Count(ctx); n != 0 {
		t.Errorf("records after replay = %d", n)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "replayed task completed", func() bool { return f.state("msg_1") == "completed" })
	info, err := f.insp.GetTaskInfo(q, "msg_1")
	if err != nil || info.Retried != 0 || info.MaxRetry != 4 || string(info.Payload) != string(full.Payload) || info.Headers[task.HeaderWebhook] != "ns/store" {
		t.Errorf("replayed task = %+v, %v; want retried 0 of max retry 4, same payload and headers", info, err)
	}
	if _, err := f.store.Replay(ctx, []string{"msg_1"}, ReplayOptions{}); !errors.Is(err, ErrNotDeadLetter) {
		t.Errorf("second replay: %v, want ErrNotDeadLetter", err)
	}
}

// A record whose task is live again (a replay that stopped after the enqueue) is finished by a
// second replay: the enqueue conflicts and the record goes.
func TestReplayAfterCrashFinishes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.enqueue(t, "msg_live", 3) // pending: a live task
	putRecord(t, f, Record{ID: "msg_live", TaskType: "resend:email.sent", Payload: []byte("{}"), Attempts: 3, MaxAttempts: 3})
	res, err := f.store.ReplayAll(ctx, ReplayOptions{})
	if err != nil || res.AlreadyQueued != 1 || res.Replayed != 0 {
		t.Fatalf("ReplayAll = %+v, %v", res, err)
	}
	if st := f.state("msg_live"); st != "pending" {
		t.Errorf("live task state = %q, want pending (never deleted by a replay)", st)
	}
	if n, _ := f.store.Count(ctx); n != 0 {
		t.Errorf("record left after replay of a queued id")
	}
}

// putRecord writes a record directly (the test's stand-in for a worker that crashed after
// writing it).
func putRecord(t *testing.T, f *fixture, r Record) {
	t.Helper()
	if r.FailedAt.IsZero() {
		r.FailedAt = time.Now()
	}
	ctx := context.Background()
	if err := f.rdb.HSet(ctx, f.store.record(r.ID), r.fields()...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZAdd(ctx, f.store.k.dead, redis.Z{Score: float64(r.FailedAt.UnixMilli()), Member: r.ID}).Err(); err != nil {
		t.Fatal(err)
	}
}

// A task Asynq archived on its own (no record) is copied from its TaskInfo.
func TestAbsorbWithoutRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.enqueue(t, "msg_a", 3)
	if err := f.insp.ArchiveTask(q, "msg_a"); err != nil {
		t.Fatal(err)
	}
	if fig := f.figures(t); fig.Dead != 1 {
		t.Errorf("dead before absorb = %d, want 1", fig.Dead)
	}
	_, n, err := f.store.Keep(ctx, time.Now(), 0)
	if err != nil || n != 1 {
		t.Fatalf("Keep absorbed %d, %v", n, err)
	}
	r, err := f.store.Get(ctx, "msg_a")
	if err != nil || r.Attempts != 1 || r.MaxAttempts != 3 || r.Timeout != 30*time.Second || r.Retention != time.Hour || len(r.Payload) == 0 {
		t.Fatalf("absorbed record = %+v, %v", r, err)
	}
	// Delete forgets it entirely: the id can be enqueued again.
	if n, err := f.store.Delete(ctx, []string{"msg_a", "msg_unknown"}); n != 1 || !errors.Is(err, ErrNotDeadLetter) {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if st := f.state("msg_a"); st != "" {
		t.Errorf("asynq hash after delete: state %q", st)
	}
	if fig := f.figures(t); fig.Dead != 0 {
		t.Errorf("dead after delete = %d", fig.Dead)
	}
}

// A task on its last attempt is parked, completed by Asynq, then restored with its retried
// count, and runs again without having consumed the parked attempt.
func TestParkAndRestore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var runs atomic.Int32
	f.serve(t, func(ctx context.Context, tk *asynq.Task) error {
		retried, _ := asynq.GetRetryCount(ctx)
		switch runs.Add(1) {
		case 1:
			return errors.New("first attempt fails") // retried becomes 1: the next run is the last
		case 2:
			ok, err := f.store.Park(ctx, "msg_p", time.Now())
			if err != nil || !ok {
				t.Errorf("Park = %v, %v", ok, err)
			}
			return nil
		default:
			if retried != 1 {
				t.Errorf("restored run retried = %d, want 1 (the parked attempt was not consumed)", retried)
			}
			return nil
		}
	})
	f.enqueue(t, "msg_p", 2)
	testutil.EventuallyTrue(t, 10*time.Second, "asynq completed the parked task", func() bool { return runs.Load() == 2 && f.state("msg_p") == "completed" })
	if fig := f.figures(t); fig.Held != 1 || fig.Pending != 1 {
		t.Errorf("figures while parked = %+v, want 1 held counted as pending", fig)
	}
	res, err := f.store.RestoreDue(ctx, time.Now(), 0)
	if err != nil || res.Restored != 1 {
		t.Fatalf("RestoreDue = %+v, %v", res, err)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "third run completed", func() bool { return runs.Load() == 3 && f.state("msg_p") == "completed" })
	if n := f.rdb.ZCard(ctx, f.store.k.held).Val() + f.rdb.HLen(ctx, f.store.k.heldMsg).Val(); n != 0 {
		t.Errorf("parked entries left: %d", n)
	}
	if n, _ := f.store.Count(ctx); n != 0 {
		t.Errorf("a parked task left a dead letter")
	}
}

// A parked copy of a task Asynq queued again itself (shutdown hand-back) is dropped, and one
// whose task is still active waits.
func TestRestoreDropsOrWaits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.enqueue(t, "msg_pending", 3)
	f.enqueue(t, "msg_active", 3)
	for _, id := range []string{"msg_pending", "msg_active"} {
		f.rdb.HSet(ctx, f.store.task(id), "state", "active")
		if ok, err := f.store.Park(ctx, id, time.Now()); err != nil || !ok {
			t.Fatalf("Park %s = %v, %v", id, ok, err)
		}
	}
	f.rdb.HSet(ctx, f.store.task("msg_pending"), "state", "pending")
	res, err := f.store.RestoreDue(ctx, time.Now(), 0)
	if err != nil || res.Dropped != 1 || res.Waiting != 1 || res.Restored != 0 {
		t.Fatalf("RestoreDue = %+v, %v", res, err)
	}
	if ok, _ := f.store.Park(ctx, "msg_pending", time.Now()); ok {
		t.Error("parked a task that is not active")
	}
}

func TestCleanError(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`sink: Post "http://sink.svc:8080/hooks/abc?token=s3cret": dial tcp: connection refused`: `sink: Post "http://sink.svc:8080/…": dial tcp: connection refused`,
		"GET HTTPS://api.example.com#frag failed":                                                "GET HTTPS://api.example.com/… failed",
		"sink answered 503":     "sink answered 503",
		"see https://host only": "see https://host only",
	} {
		if got := CleanError(in); got != want {
			t.Errorf("CleanError(%q) = %q, want %q", in, got, want)
		}
	}
	got := CleanError(strings.Repeat("é", MaxErrorBytes))
	if len(got) > MaxErrorBytes+len("… (truncated)") || !strings.HasSuffix(got, "(truncated)") || !utf8.ValidString(got) {
		t.Errorf("long error: %d bytes, valid=%v", len(got), utf8.ValidString(got))
	}
}

func TestSinkReports(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	since := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if err := f.store.ReportSink(ctx, "w1", SinkReport{State: SinkOpen, Since: since, ErrorClass: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	// A report nobody refreshed: ignored by readers, pruned by writers once very old.
	f.rdb.HSet(ctx, f.store.k.sink, "w-gone", `{"state":"open","updatedAt":"2020-01-01T00:00:00Z"}`)
	if err := f.store.ReportSink(ctx, "w2", SinkReport{State: SinkClosed, Since: since}); err != nil {
		t.Fatal(err)
	}
	reps, err := f.store.SinkReports(ctx)
	if err != nil || len(reps) != 2 || reps[0].Worker != "w1" || !reps[0].Open() || reps[0].ErrorClass != "connection refused" ||
		!reps[0].Since.Equal(since) || reps[1].Open() {
		t.Fatalf("SinkReports = %+v, %v", reps, err)
	}
	if f.rdb.HExists(ctx, f.store.k.sink, "w-gone").Val() {
		t.Error("stale report not pruned by a writer")
	}
	if err := f.store.RemoveSinkReport(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if reps, _ := f.store.SinkReports(ctx); len(reps) != 1 {
		t.Errorf("after removal: %+v", reps)
	}
}

func TestFiguresUnknownQueueAndRedisDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	fig, err := f.store.Figures(context.Background())
	if err != nil || fig != (Figures{}) {
		t.Fatalf("unknown queue: %+v, %v; want zeros", fig, err)
	}
	f.redis.Stop()
	if _, err := f.store.Figures(context.Background()); err == nil {
		t.Fatal("Figures with Redis down returned no error")
	}
}

// Bytes one dead letter of a 1 KB event costs in Redis: our record, its index entry and the
// Asynq hash kept as the deduplication marker.
func TestDeadLetterMemory(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	body := []byte(`{"type":"email.bounced","data":{"pad":"` + strings.Repeat("x", 1024-40) + `"}}`)
	tk := asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), body, map[string]string{
		task.HeaderSvixID: "msg_2mJ7cXqPzR8vTn4LkWb9sYdF1aE", task.HeaderSvixTimestamp: "1767225600",
		task.HeaderSvixSignature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", task.HeaderReceivedAt: "2026-01-01T00:00:00Z",
		task.HeaderWebhook: "mail/events"})
	id := tk.Headers()[task.HeaderSvixID]
	if _, err := f.client.Enqueue(tk, asynq.Queue(q), asynq.TaskID(id), asynq.MaxRetry(2), asynq.Timeout(time.Minute), asynq.Retention(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.insp.ArchiveTask(q, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Absorb(ctx, 0); err != nil {
		t.Fatal(err)
	}
	rec, marker := memory(t, f, f.store.record(id)), memory(t, f, f.store.task(id))
	// The index entry: the growth of a 1,000-entry index (skiplist encoding) by one more id.
	for i := range 1000 {
		f.rdb.ZAdd(ctx, f.store.k.dead, redis.Z{Score: float64(i), Member: fmt.Sprintf("msg_2mJ7cXqPzR8vTn4LkWb9sY%04d", i)})
	}
	before := memory(t, f, f.store.k.dead)
	f.rdb.ZAdd(ctx, f.store.k.dead, redis.Z{Score: 1e12, Member: "msg_2mJ7cXqPzR8vTn4LkWb9sYZZZZ"})
	index := max(memory(t, f, f.store.k.dead)-before, 0)
	total := rec + marker + index
	t.Logf("bytes per dead letter of a %d-byte event: record %d + asynq marker %d + index entry %d = %d", len(body), rec, marker, index, total)
	if rec <= int64(len(body)) || marker >= int64(len(body)) || total > 4*1024 {
		t.Errorf("record %d bytes, marker %d, total %d: want the body in the record only and at most 4 KiB in all", rec, marker, total)
	}
}

func memory(t *testing.T, f *fixture, key string) int64 {
	t.Helper()
	n, err := f.rdb.MemoryUsage(context.Background(), key, 0).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}
