package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func (e *testEnv) store(t testing.TB) *queuestore.Store {
	return queuestore.New(e.redis.Client(t), e.queue)
}

// An event on its last attempt meets a sink that is down: the breaker holds it, parks it when
// its hold budget runs out, the keeper restores it, and once the sink is back it is delivered —
// not dead-lettered, and with no attempt consumed.
func TestLastAttemptHeldParkedRestoredDelivered(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	var down atomic.Bool
	down.Store(true)
	sink := newTestSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := env.config(t)
	cfg.MaxDuration = 2 * time.Second // hold budget ≈ 1 s, then parked
	cfg.Breaker = BreakerConfig{Threshold: 1, ProbeInterval: 200 * time.Millisecond, MaxProbeInterval: 400 * time.Millisecond, MaxHold: time.Minute}
	w := startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: time.Second}))

	enqueue(t, env.opt, env.queue, EventEmailBounced, "msg_last", eventBody(EventEmailBounced, 256), 1, 2*time.Second)
	eventually(t, 20*time.Second, "parked and restored at least once", func() bool {
		return testutil.ToFloat64(w.metrics.parked) >= 1 && testutil.ToFloat64(w.metrics.restored) >= 1
	})
	if v := testutil.ToFloat64(w.metrics.circuitOpen); v != 1 {
		t.Errorf("circuit_open = %v while the sink is down", v)
	}
	reps, err := env.store(t).SinkReports(context.Background())
	if err != nil || len(reps) != 1 || !reps[0].Open() || reps[0].ErrorClass != "http 503" {
		t.Errorf("sink reports while down = %+v, %v", reps, err)
	}
	down.Store(false)
	eventually(t, 20*time.Second, "delivered", func() bool { return env.taskState(t, "msg_last") == asynq.TaskStateCompleted && lastStatusOK(sink) })
	info, err := env.inspector(t).GetTaskInfo(env.queue, "msg_last")
	if err != nil || info.Retried != 0 {
		t.Errorf("delivered task: %+v, %v; want retried 0 (no attempt consumed)", info, err)
	}
	if n, _ := env.store(t).Count(context.Background()); n != 0 {
		t.Errorf("%d dead letters; want none", n)
	}
	if v := testutil.ToFloat64(w.metrics.deadLettered.WithLabelValues(EventEmailBounced)); v != 0 {
		t.Errorf("dead_lettered = %v", v)
	}
	eventually(t, 5*time.Second, "breaker closed", func() bool { return testutil.ToFloat64(w.metrics.circuitOpen) == 0 })
	if v := testutil.ToFloat64(w.metrics.transitions.WithLabelValues("closed")); v != 1 {
		t.Errorf("closed transitions = %v, want 1", v)
	}
}

func lastStatusOK(s *testSink) bool {
	reqs := s.requests()
	return len(reqs) > 0 && reqs[len(reqs)-1].header.Get("webhook-id") != "" && !s.down()
}

// A replayed dead letter gets its full retry budget again (Asynq's RunTask would keep the
// retried count and allow one attempt).
func TestReplayGivesFullBudget(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, status(500))
	cfg := env.config(t)
	cfg.Retry.Randomize = false
	startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 5 * time.Second}))
	store := env.store(t)
	ctx := context.Background()

	enqueue(t, env.opt, env.queue, EventEmailFailed, "msg_replay", eventBody(EventEmailFailed, 256), 2, time.Minute)
	eventually(t, 20*time.Second, "dead-lettered", func() bool { n, _ := store.Count(ctx); return n == 1 })
	rec, err := store.Get(ctx, "msg_replay")
	if err != nil || rec.Attempts != 2 || rec.MaxAttempts != 2 || !strings.Contains(rec.LastError, "sink answered 500") {
		t.Fatalf("record = %+v, %v", rec, err)
	}
	if res, err := store.Replay(ctx, []string{"msg_replay"}, queuestore.ReplayOptions{}); err != nil || res.Replayed != 1 {
		t.Fatalf("Replay = %+v, %v", res, err)
	}
	eventually(t, 20*time.Second, "dead-lettered again", func() bool { n, _ := store.Count(ctx); return n == 1 && len(sink.requests()) == 4 })
	if n := len(sink.requests()); n != 4 {
		t.Errorf("sink got %d attempts, want 2 + 2 (a fresh budget)", n)
	}
}

// More than 10,000 dead letters (Asynq trims its archive at 10,000) are all kept, and every
// one of their svix-ids is still refused by an enqueue, as a re-delivery would be.
func TestMoreThan10000DeadLettersKeptAndDeduplicated(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	const n = 10_300
	client := asynq.NewClient(env.opt)
	t.Cleanup(func() { _ = client.Close() })
	body := eventBody(EventEmailSent, 64)
	id := func(i int) string { return fmt.Sprintf("msg_many_%05d", i) }
	if err := rwhtest.ForEachParallel(n, 16, func(i int) error {
		_, err := client.Enqueue(newReceiverTask(EventEmailSent, id(i), body), asynq.Queue(env.queue), asynq.TaskID(id(i)),
			asynq.MaxRetry(2), asynq.Timeout(time.Minute), asynq.Retention(time.Hour))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg := env.config(t)
	cfg.Concurrency = 10
	cfg.Logger = slog.New(slog.DiscardHandler) // 10,300 error lines help nobody
	startWorker(t, cfg, func(w *Worker) {
		w.HandleFunc("*", func(context.Context, *Event) error { return Permanent(errors.New("rejected")) })
	})
	store := env.store(t)
	ctx := context.Background()
	eventually(t, 3*time.Minute, "all dead-lettered and absorbed", func() bool {
		f, err := store.Figures(ctx)
		c, _ := store.Count(ctx)
		return err == nil && c == n && f.Dead == n && f.Pending == 0 && f.Active == 0
	})
	var conflicts atomic.Int64
	if err := rwhtest.ForEachParallel(n, 16, func(i int) error {
		_, err := client.Enqueue(newReceiverTask(EventEmailSent, id(i), body), asynq.Queue(env.queue), asynq.TaskID(id(i)))
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			conflicts.Add(1)
			return nil
		}
		return fmt.Errorf("%s: enqueue of a dead-lettered id: %v (want a conflict)", id(i), err)
	}); err != nil {
		t.Fatal(err)
	}
	if conflicts.Load() != n {
		t.Errorf("%d conflicts, want %d", conflicts.Load(), n)
	}
}

// A panicking handler is recovered by the worker: counted, and on the last attempt written as
// a dead letter with the panic as its error.
func TestPanickingHandler(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	w := startWorker(t, env.config(t), func(w *Worker) {
		w.HandleFunc("*", func(context.Context, *Event) error { panic("boom") })
	})
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_panic", eventBody(EventEmailSent, 64), 1, time.Minute)
	eventually(t, 10*time.Second, "dead letter", func() bool { n, _ := env.store(t).Count(context.Background()); return n == 1 })
	rec, err := env.store(t).Get(context.Background(), "msg_panic")
	if err != nil || !strings.Contains(rec.LastError, "handler panicked: boom") {
		t.Errorf("record = %+v, %v", rec, err)
	}
	if v := testutil.ToFloat64(w.metrics.panics); v != 1 {
		t.Errorf("panics = %v, want 1", v)
	}
}

// A handler returning context.Canceled while the worker is not stopping has failed: the
// attempt counts.
func TestCancelOutsideShutdownIsFailure(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	var calls atomic.Int32
	startWorker(t, env.config(t), func(w *Worker) {
		w.HandleFunc("*", func(context.Context, *Event) error {
			if calls.Add(1) == 1 {
				return fmt.Errorf("downstream call: %w", context.Canceled)
			}
			return nil
		})
	})
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_cancel", eventBody(EventEmailSent, 64), 3, time.Minute)
	eventually(t, 20*time.Second, "completed", func() bool { return env.taskState(t, "msg_cancel") == asynq.TaskStateCompleted })
	if info, err := env.inspector(t).GetTaskInfo(env.queue, "msg_cancel"); err != nil || info.Retried != 1 {
		t.Errorf("task = %+v, %v; want retried 1 (the cancelled attempt counted)", info, err)
	}
}

// --shutdown-grace=0 hands an unfinished attempt back at once (asynq alone would wait 8 s).
func TestShutdownGraceZero(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	started := make(chan struct{}, 1)
	cfg := env.config(t)
	cfg.ShutdownGrace = NoShutdownGrace
	w := startWorker(t, cfg, func(w *Worker) {
		w.HandleFunc("*", func(ctx context.Context, _ *Event) error { started <- struct{}{}; <-ctx.Done(); return ctx.Err() })
	})
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_grace0", eventBody(EventEmailSent, 64), 3, time.Minute)
	<-started
	begin := time.Now()
	w.stop(t)
	if took := time.Since(begin); took > 4*time.Second {
		t.Errorf("stop took %s with no grace; asynq's 8 s default was applied", took)
	}
	if st := env.taskState(t, "msg_grace0"); st != asynq.TaskStatePending {
		t.Errorf("task state = %v, want pending (handed back)", st)
	}
	if info, _ := env.inspector(t).GetTaskInfo(env.queue, "msg_grace0"); info == nil || info.Retried != 0 {
		t.Errorf("handed-back task counted an attempt: %+v", info)
	}
}

// A record written by an attempt that then did not reach asynq (here: written by the handler
// itself, as a crash right after writing would leave it) is removed when the task succeeds.
func TestStaleRecordRemovedOnSuccess(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	store := env.store(t)
	var calls atomic.Int32
	var seenBefore atomic.Int64
	startWorker(t, env.config(t), func(w *Worker) {
		w.HandleFunc("*", func(ctx context.Context, ev *Event) error {
			if calls.Add(1) == 1 {
				if ok, err := store.WriteDeadLetter(ctx, queuestore.Record{ID: ev.ID, TaskType: task.TypeName(ev.Type), Payload: ev.Body, Attempts: 1, MaxAttempts: 3}); !ok || err != nil {
					t.Errorf("WriteDeadLetter = %v, %v", ok, err)
				}
				return errors.New("crash stand-in")
			}
			n, _ := store.Count(ctx)
			seenBefore.Store(n)
			return nil
		})
	})
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_stale", eventBody(EventEmailSent, 64), 3, time.Minute)
	eventually(t, 20*time.Second, "completed", func() bool { return env.taskState(t, "msg_stale") == asynq.TaskStateCompleted })
	if seenBefore.Load() != 1 {
		t.Fatalf("the stale record was not there before the successful attempt (%d)", seenBefore.Load())
	}
	eventually(t, 5*time.Second, "stale record removed", func() bool { n, _ := store.Count(context.Background()); return n == 0 })
}

// An error carrying a URL path or query (the sink's own, or one in a handler's error) never
// reaches logs, asynq's stored error or the dead letter.
func TestURLPathNeverLoggedOrStored(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	closed, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var logs rwhtest.LogBuffer
	cfg := env.config(t)
	cfg.Breaker.Disabled = true
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	startWorker(t, cfg, func(w *Worker) {
		withSink(t, SinkConfig{URL: "http://" + closed + "/hooks/s3cret-path?token=t0ken", Timeout: time.Second})(w)
		w.HandleFunc(EventEmailOpened, func(context.Context, *Event) error {
			return errors.New(`GET "https://api.example.com/v1/users?api_key=k3y" failed`)
		})
	})
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_url_sink", eventBody(EventEmailSent, 64), 1, time.Minute)
	enqueue(t, env.opt, env.queue, EventEmailOpened, "msg_url_custom", eventBody(EventEmailOpened, 64), 1, time.Minute)
	store := env.store(t)
	eventually(t, 10*time.Second, "both dead-lettered", func() bool { n, _ := store.Count(context.Background()); return n == 2 })
	var stored []string
	for _, id := range []string{"msg_url_sink", "msg_url_custom"} {
		rec, err := store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		info, err := env.inspector(t).GetTaskInfo(env.queue, id)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, rec.LastError, info.LastErr)
	}
	if !strings.Contains(stored[0], "connection refused") || !strings.Contains(stored[2], "https://api.example.com/…") {
		t.Errorf("stored errors lost their meaning: %q", stored)
	}
	for _, secret := range []string{"s3cret-path", "t0ken", "k3y", "/v1/users"} {
		for _, s := range append(stored, logs.String()) {
			if strings.Contains(s, secret) {
				t.Errorf("%q leaked into %.300q", secret, s)
			}
		}
	}
}
