package receiver

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// TestRedeliveryWhileTaskIsActiveRetryingOrCompleted: a worker holds one delivery (active), has
// failed another once (retry) and finished a third (completed, within the dedup window). A
// re-delivery of each is a 200 duplicate that leaves the task as it was and enqueues nothing.
func TestRedeliveryWhileTaskIsActiveRetryingOrCompleted(t *testing.T) {
	f := newFixture(t, nil)
	release := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(f.redis.Client(t), asynq.Config{
		Concurrency:       2,
		Queues:            map[string]int{"ns.hook": 1},
		TaskCheckInterval: 20 * time.Millisecond,
		// A failed task stays in the retry set; the failing handler is on purpose: no log.
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
	})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		switch id, _ := asynq.GetTaskID(ctx); id {
		case "msg_active":
			select { // a worker holding the task; no t.* calls from here
			case <-release:
			case <-ctx.Done():
			}
			return nil
		case "msg_retry":
			return errors.New("sink said 500")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); srv.Shutdown() })

	body := event("email.delivered")
	post := func(id string) response { return f.deliver(t, id, body) }
	for _, tc := range []struct {
		id    string
		state asynq.TaskState
	}{
		{"msg_active", asynq.TaskStateActive},
		{"msg_retry", asynq.TaskStateRetry},
		{"msg_done", asynq.TaskStateCompleted},
	} {
		t.Run(tc.state.String(), func(t *testing.T) {
			if r := post(tc.id); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
				t.Fatalf("first delivery: %d %s", r.code, r.body)
			}
			var first *asynq.TaskInfo
			eventually(t, 10*time.Second, "task "+tc.state.String(), func() bool {
				info, ok := f.task(t, "ns.hook", tc.id)
				first = info
				return ok && info.State == tc.state
			})
			before := f.tasks(t, "ns.hook")
			if r := post(tc.id); r.code != http.StatusOK || !strings.Contains(r.body, "duplicate") {
				t.Fatalf("re-delivery while %s: %d %s, want 200 duplicate", tc.state, r.code, r.body)
			}
			info, ok := f.task(t, "ns.hook", tc.id)
			if !ok || info.State != tc.state || info.Retried != first.Retried || !info.NextProcessAt.Equal(first.NextProcessAt) ||
				!info.CompletedAt.Equal(first.CompletedAt) || info.Headers["svix-timestamp"] != first.Headers["svix-timestamp"] {
				t.Fatalf("task changed by the re-delivery:\nbefore %+v\nafter  %+v", first, info)
			}
			if after := f.tasks(t, "ns.hook"); after != before {
				t.Fatalf("tasks %d → %d: the re-delivery enqueued something", before, after)
			}
		})
	}
}

// A replay signed within the tolerance must still find its svix-id: the dedup window has to
// cover twice the tolerance (the first delivery may have been signed a tolerance ahead).
func TestDedupWindowMustCoverTwiceTheTolerance(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never used
	t.Cleanup(func() { _ = c.Close() })
	o := Options{Redis: c, Secrets: StaticSecrets(nil), Queue: "q", DedupWindow: 10*time.Minute - time.Second, Tolerance: 5 * time.Minute}
	if _, err := NewHandler(o); err == nil || !strings.Contains(err.Error(), "twice the tolerance") {
		t.Fatalf("dedup window 9m59s with tolerance 5m: %v, want an error", err)
	}
	o.DedupWindow = 10 * time.Minute
	if _, err := NewHandler(o); err != nil {
		t.Fatalf("dedup window exactly twice the tolerance: %v", err)
	}
}
