package worker

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

const helperEnv = "RWH_WORKER_TEST_HELPER_ARGS"

// TestHelperProcess is not a test: it is the child process of TestSIGKILLMidAttempt, running the
// real "worker" subcommand with the flags in $RWH_WORKER_TEST_HELPER_ARGS (newline-separated).
func TestHelperProcess(t *testing.T) {
	args := os.Getenv(helperEnv)
	if args == "" {
		t.Skip("helper process for TestSIGKILLMidAttempt")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(args, "\n"), os.Getenv, os.Stdout); err != nil {
		os.Stderr.WriteString("worker: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// A worker killed with SIGKILL in the middle of an attempt loses nothing: once the task's lease
// has expired, asynq's recoverer in another worker puts it back and it is delivered again.
// Asynq v0.26 fixes the timing: leases last 30 s (extended every 5 s while the worker lives)
// and the recoverer only takes tasks whose lease expired more than 30 s ago, so the test waits
// about a minute after the kill.
func TestSIGKILLMidAttempt(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a minute (asynq lease expiry)")
	}
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			<-r.Context().Done() // the first attempt hangs until its worker dies
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	child := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	child.Env = append(os.Environ(), helperEnv+"="+strings.Join([]string{
		"--redis-url=" + env.redis.URL(), "--queue=" + env.queue, "--sink-url=" + sink.URL,
		"--admin-listen=127.0.0.1:0", "--poll-interval=100ms", "--min-backoff=1s", "--max-backoff=2s",
	}, "\n"))
	var childOut strings.Builder
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	enqueue(t, env.opt, env.queue, EventEmailComplained, "msg_crash_1", eventBody(EventEmailComplained, 512), 3, time.Minute)
	eventually(t, 20*time.Second, "first attempt in flight in the child", func() bool { return len(sink.requests()) == 1 })
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var exitErr *exec.ExitError
	if err := child.Wait(); !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child exit: %v\n%s", err, childOut.String())
	}
	if st := env.taskState(t, "msg_crash_1"); st != asynq.TaskStateActive {
		t.Fatalf("task state after SIGKILL = %v, want active (leased by the dead worker)", st)
	}

	// Wait until the recoverer will take the task: lease expiry + 30 s (see above).
	rdb := env.redis.Client(t)
	leaseKey := "asynq:{" + env.queue + "}:lease"
	eventually(t, 90*time.Second, "lease expired for 30s", func() bool {
		score, err := rdb.ZScore(context.Background(), leaseKey, "msg_crash_1").Result()
		if errors.Is(err, redis.Nil) {
			return true
		}
		return err == nil && float64(time.Now().Unix()-30) >= score
	})

	startWorker(t, env.config(t), withSink(t, SinkConfig{URL: sink.URL, Timeout: 5 * time.Second}))
	eventually(t, 20*time.Second, "task completed by the new worker", func() bool { return env.taskState(t, "msg_crash_1") == asynq.TaskStateCompleted })
	reqs := sink.requests()
	if len(reqs) != 2 {
		t.Fatalf("sink got %d requests, want 2 (the killed attempt and the recovered one)", len(reqs))
	}
	for i, r := range reqs {
		if id := r.header.Get("webhook-id"); id != "msg_crash_1" {
			t.Errorf("request %d webhook-id = %q", i, id)
		}
	}
	info, err := env.inspector(t).GetTaskInfo(env.queue, "msg_crash_1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Retried != 1 {
		t.Errorf("retried = %d, want 1 (the killed attempt counts as one failed attempt)", info.Retried)
	}
}
