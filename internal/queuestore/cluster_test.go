package queuestore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// clusterFixture is a Store of one queue on a Redis Cluster, with asynq's client and Inspector
// on the same cluster client.
type clusterFixture struct {
	rdb    *redis.ClusterClient
	queue  string
	store  *Store
	client *asynq.Client
	insp   *asynq.Inspector
}

func newClusterFixture(t *testing.T, c *testutil.RedisCluster, queue string) *clusterFixture {
	t.Helper()
	rdb := c.Client(t)
	return &clusterFixture{rdb: rdb, queue: queue, store: New(rdb, queue),
		client: asynq.NewClientFromRedisClient(rdb), insp: asynq.NewInspectorFromRedisClient(rdb)}
}

func (f *clusterFixture) enqueue(t *testing.T, id string, maxAttempts int) {
	t.Helper()
	tk := asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), []byte(`{"type":"email.bounced","id":"`+id+`"}`),
		map[string]string{task.HeaderSvixID: id, task.HeaderWebhook: "ns/store"})
	if _, err := f.client.Enqueue(tk, asynq.Queue(f.queue), asynq.TaskID(id), asynq.MaxRetry(maxAttempts-1),
		asynq.Timeout(30*time.Second), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// serve runs a bare asynq server on the queue, on the cluster, until the test ends.
func (f *clusterFixture) serve(t *testing.T, handler asynq.HandlerFunc) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(f.rdb, asynq.Config{
		Concurrency: 2, Queues: map[string]int{f.queue: 1}, TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 0 }, LogLevel: asynq.ErrorLevel,
	})
	if err := srv.Start(handler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

func (f *clusterFixture) state(id string) string {
	return f.rdb.HGet(context.Background(), f.store.task(id), "state").Val()
}

// TestStoreOnACluster: every script of the store (dead-letter write, absorb with and without
// a record, slimming of the marker, figures, replay, delete, park and restore) and its plain
// commands run on a Redis Cluster: each touches only keys of its queue's slot. Each part has
// a queue of its own, on one shared cluster.
func TestStoreOnACluster(t *testing.T) {
	c := testutil.StartRedisCluster(t, 3)
	ctx := context.Background()

	t.Run("write, absorb, replay", func(t *testing.T) {
		t.Parallel()
		f := newClusterFixture(t, c, "ns.cluster.dead")
		var written atomic.Bool
		f.serve(t, func(ctx context.Context, tk *asynq.Task) error {
			if written.Load() {
				return nil // the replayed task: done
			}
			id, _ := asynq.GetTaskID(ctx)
			ok, err := f.store.WriteDeadLetter(ctx, Record{ID: id, TaskType: tk.Type(), Payload: tk.Payload(), Headers: tk.Headers(),
				Attempts: 1, MaxAttempts: 1, LastError: "sink answered 400"})
			if err != nil || !ok {
				t.Errorf("WriteDeadLetter = %v, %v; want written", ok, err)
			}
			written.Store(true)
			return asynq.SkipRetry
		})
		f.enqueue(t, "msg_1", 1)
		testutil.EventuallyTrue(t, 10*time.Second, "archived by asynq", func() bool { return written.Load() && f.state("msg_1") == "archived" })
		if fig, err := f.store.Figures(ctx); err != nil || fig.Dead != 1 {
			t.Fatalf("Figures before absorb = %+v, %v; want 1 dead", fig, err)
		}
		if n, err := f.store.Absorb(ctx, 0); err != nil || n != 1 {
			t.Fatalf("Absorb = %d, %v", n, err)
		}
		if info, err := f.insp.GetTaskInfo(f.queue, "msg_1"); err != nil || len(info.Payload) != 0 || info.State != asynq.TaskStateArchived {
			t.Errorf("marker after absorb = %+v, %v; want archived without payload", info, err)
		}
		recs, err := f.store.List(ctx, 0, 0)
		if err != nil || len(recs) != 1 || recs[0].ID != "msg_1" || recs[0].LastError != "sink answered 400" {
			t.Fatalf("List = %+v, %v", recs, err)
		}
		if r, err := f.store.Get(ctx, "msg_1"); err != nil || string(r.Payload) != `{"type":"email.bounced","id":"msg_1"}` {
			t.Fatalf("Get = %+v, %v", r, err)
		}
		if _, err := f.client.Enqueue(asynq.NewTask("resend:email.bounced", nil), asynq.Queue(f.queue), asynq.TaskID("msg_1")); !errors.Is(err, asynq.ErrTaskIDConflict) {
			t.Errorf("re-delivery of a dead letter: %v, want ErrTaskIDConflict", err)
		}
		if res, err := f.store.Replay(ctx, []string{"msg_1"}, ReplayOptions{MaxAttempts: 3}); err != nil || res.Replayed != 1 {
			t.Fatalf("Replay = %+v, %v", res, err)
		}
		testutil.EventuallyTrue(t, 10*time.Second, "replayed task completed", func() bool { return f.state("msg_1") == "completed" })
		if n, err := f.store.Count(ctx); err != nil || n != 0 {
			t.Errorf("records after replay = %d, %v", n, err)
		}
	})

	t.Run("absorb without a record, delete", func(t *testing.T) {
		t.Parallel()
		f := newClusterFixture(t, c, "ns.cluster.absorb")
		f.enqueue(t, "msg_a", 3)
		if err := f.insp.ArchiveTask(f.queue, "msg_a"); err != nil {
			t.Fatal(err)
		}
		if _, n, err := f.store.Keep(ctx, time.Now(), 0); err != nil || n != 1 {
			t.Fatalf("Keep absorbed %d, %v", n, err)
		}
		if r, err := f.store.Get(ctx, "msg_a"); err != nil || r.MaxAttempts != 3 || len(r.Payload) == 0 {
			t.Fatalf("absorbed record = %+v, %v", r, err)
		}
		if n, err := f.store.Delete(ctx, []string{"msg_a"}); err != nil || n != 1 {
			t.Fatalf("Delete = %d, %v", n, err)
		}
		if st := f.state("msg_a"); st != "" {
			t.Errorf("asynq hash after delete: state %q", st)
		}
	})

	t.Run("park and restore", func(t *testing.T) {
		t.Parallel()
		f := newClusterFixture(t, c, "ns.cluster.park")
		var runs atomic.Int32
		f.serve(t, func(ctx context.Context, tk *asynq.Task) error {
			if runs.Add(1) == 1 {
				if ok, err := f.store.Park(ctx, "msg_p", time.Now()); err != nil || !ok {
					t.Errorf("Park = %v, %v", ok, err)
				}
			}
			return nil
		})
		f.enqueue(t, "msg_p", 2)
		testutil.EventuallyTrue(t, 10*time.Second, "asynq completed the parked task", func() bool { return runs.Load() == 1 && f.state("msg_p") == "completed" })
		if fig, err := f.store.Figures(ctx); err != nil || fig.Held != 1 {
			t.Fatalf("Figures while parked = %+v, %v; want 1 held", fig, err)
		}
		if res, err := f.store.RestoreDue(ctx, time.Now(), 0); err != nil || res.Restored != 1 {
			t.Fatalf("RestoreDue = %+v, %v", res, err)
		}
		testutil.EventuallyTrue(t, 10*time.Second, "restored task ran again", func() bool { return runs.Load() == 2 && f.state("msg_p") == "completed" })
	})

	t.Run("sink reports", func(t *testing.T) {
		t.Parallel()
		f := newClusterFixture(t, c, "ns.cluster.sink")
		if err := f.store.ReportSink(ctx, "w1", SinkReport{State: SinkOpen, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if reps, err := f.store.SinkReports(ctx); err != nil || len(reps) != 1 || !reps[0].Open() {
			t.Fatalf("SinkReports = %+v, %v", reps, err)
		}
	})
}
