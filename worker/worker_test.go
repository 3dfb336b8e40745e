package worker

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	svix "github.com/svix/svix-webhooks/go"
)

func TestDeliversExactBodySigned(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	secret, secretFile := writeSecret(t)
	sink := newTestSink(t, status(http.StatusNoContent))
	cfg := env.config(t)
	cfg.AdminListen = "127.0.0.1:0"
	w := startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 5 * time.Second, SecretFile: secretFile}))
	adminAddr := <-w.admin

	body := eventBody(EventEmailBounced, 1024)
	enqueue(t, env.opt, env.queue, EventEmailBounced, "msg_delivered_1", body, 3, time.Minute)
	eventually(t, 10*time.Second, "task completed", func() bool { return env.taskState(t, "msg_delivered_1") == asynq.TaskStateCompleted })

	reqs := sink.requests()
	if len(reqs) != 1 {
		t.Fatalf("sink got %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if !bytes.Equal(got.body, body) {
		t.Errorf("sink body differs from the queued body:\n got %q\nwant %q", got.body, body)
	}
	if got.length != int64(len(body)) {
		t.Errorf("Content-Length = %d, want %d", got.length, len(body))
	}
	if ct := got.header.Get("content-type"); ct != "application/json" {
		t.Errorf("content-type = %q", ct)
	}
	if id := got.header.Get("webhook-id"); id != "msg_delivered_1" {
		t.Errorf("webhook-id = %q, want the svix-id", id)
	}
	ts, err := strconv.ParseInt(got.header.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp = %q, want now", got.header.Get("webhook-timestamp"))
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, got.header); err != nil {
		t.Errorf("svix Verify rejected the sink request: %v", err)
	}
	other, _ := svix.NewWebhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==")
	if err := other.Verify(got.body, got.header); err == nil {
		t.Error("a different secret verified the signature too")
	}
	if v := testutil.ToFloat64(w.metrics.succeeded.WithLabelValues(EventEmailBounced)); v != 1 {
		t.Errorf("succeeded = %v, want 1", v)
	}

	// Admin endpoints: ready (Redis reachable) and the metrics named in docs/worker.md.
	base := "http://" + adminAddr.String()
	eventually(t, 5*time.Second, "/readyz 200", func() bool { return httpStatus(t, base+"/readyz") == http.StatusOK })
	if code := httpStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	metricsText := httpBody(t, base+"/metrics")
	for _, want := range []string{
		`rwh_worker_processed_total{event_type="email.bounced"} 1`,
		`rwh_worker_succeeded_total{event_type="email.bounced"} 1`,
		`rwh_worker_attempt_duration_seconds_count{event_type="email.bounced",outcome="success"} 1`,
		`rwh_worker_queue_tasks{queue="ns.test",state="archived"} 0`,
		`rwh_worker_sink_requests_total{result="2xx"} 1`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestReadyzFollowsRedis(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cfg := env.config(t)
	cfg.AdminListen = "127.0.0.1:0"
	w := startWorker(t, cfg, func(w *Worker) { w.HandleFunc("*", func(context.Context, *Event) error { return nil }) })
	base := "http://" + (<-w.admin).String()
	eventually(t, 5*time.Second, "/readyz 200", func() bool { return httpStatus(t, base+"/readyz") == http.StatusOK })
	env.redis.Stop()
	eventually(t, 10*time.Second, "/readyz 503 with Redis down", func() bool { return httpStatus(t, base+"/readyz") == http.StatusServiceUnavailable })
	if code := httpStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d with Redis down, want 200 (liveness must not depend on Redis)", code)
	}
	if err := env.redis.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "/readyz 200 again", func() bool { return httpStatus(t, base+"/readyz") == http.StatusOK })
}

func TestRetriesWithBackoffThenDelivers(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, status(500, 500, 200))
	cfg := env.config(t) // factor 2, min 1s, max 2s, randomized
	w := startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 5 * time.Second}))

	enqueue(t, env.opt, env.queue, EventEmailDelivered, "msg_retry_1", eventBody(EventEmailDelivered, 512), 3, time.Minute)
	eventually(t, 20*time.Second, "task completed", func() bool { return env.taskState(t, "msg_retry_1") == asynq.TaskStateCompleted })

	reqs := sink.requests()
	if len(reqs) != 3 {
		t.Fatalf("sink got %d requests, want 3 (500, 500, 200)", len(reqs))
	}
	p := cfg.Retry
	for n := 1; n <= 2; n++ {
		gap := reqs[n].at.Sub(reqs[n-1].at)
		lo := p.Delay(n, 0) // R = 1: never earlier than this
		// R < 2, plus asynq's whole-second scheduling and one poll of due retries and of the queue.
		hi := p.Delay(n, 0.999999) + time.Second + 2*cfg.PollInterval + 1500*time.Millisecond // + slack for a loaded CPU
		t.Logf("gap after failed attempt %d: %s (allowed %s…%s)", n, gap, lo, hi)
		if gap < lo || gap > hi {
			t.Errorf("gap after failed attempt %d = %s, want within [%s, %s]", n, gap, lo, hi)
		}
		if id := reqs[n].header.Get("webhook-id"); id != "msg_retry_1" {
			t.Errorf("attempt %d webhook-id = %q", n+1, id)
		}
	}
	if v := testutil.ToFloat64(w.metrics.retried.WithLabelValues(EventEmailDelivered)); v != 2 {
		t.Errorf("retried = %v, want 2", v)
	}
	if v := testutil.ToFloat64(w.metrics.succeeded.WithLabelValues(EventEmailDelivered)); v != 1 {
		t.Errorf("succeeded = %v, want 1", v)
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		codes        []int
		wantAttempts int
		wantErr      string
	}{
		{"always 500 exhausts 3 attempts", []int{500}, 3, "sink answered 500"},
		{"400 is not retried", []int{400}, 1, "sink rejected the event with 400"},
		{"429 then 410", []int{429, 410}, 2, "sink rejected the event with 410"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			sink := newTestSink(t, status(tc.codes...))
			cfg := env.config(t)
			cfg.Retry.Randomize = false
			w := startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 5 * time.Second}))

			enqueue(t, env.opt, env.queue, EventEmailFailed, "msg_dead_1", eventBody(EventEmailFailed, 256), 3, time.Minute)
			eventually(t, 20*time.Second, "task archived", func() bool { return env.taskState(t, "msg_dead_1") == asynq.TaskStateArchived })
			if n := len(sink.requests()); n != tc.wantAttempts {
				t.Errorf("sink got %d attempts, want %d", n, tc.wantAttempts)
			}
			info, err := env.inspector(t).GetTaskInfo(env.queue, "msg_dead_1")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(info.LastErr, tc.wantErr) {
				t.Errorf("archived task's last error = %q, want it to contain %q", info.LastErr, tc.wantErr)
			}
			if v := testutil.ToFloat64(w.metrics.deadLettered.WithLabelValues(EventEmailFailed)); v != 1 {
				t.Errorf("dead_lettered = %v, want 1", v)
			}
			if v := testutil.ToFloat64(w.metrics.retried.WithLabelValues(EventEmailFailed)); v != float64(tc.wantAttempts-1) {
				t.Errorf("retried = %v, want %d", v, tc.wantAttempts-1)
			}
			// The dead letter shows in the queue gauges (refreshed every 5 s).
			eventually(t, 10*time.Second, "archived gauge 1", func() bool {
				return testutil.ToFloat64(w.metrics.queueTasks.WithLabelValues(env.queue, "archived")) == 1
			})
		})
	}
}

// A task enqueued by something other than a receiver (no svix-id header, asynq's default of 25
// retries) gets the worker's --max-attempts.
func TestForeignTaskGetsFlagMaxAttempts(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, status(500))
	cfg := env.config(t)
	cfg.Retry = RetryPolicy{MaxAttempts: 2, Factor: 1, MinBackoff: time.Second, MaxBackoff: time.Second}
	startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 5 * time.Second}))

	c := asynq.NewClient(env.opt)
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Enqueue(asynq.NewTask("resend:email.sent", eventBody(EventEmailSent, 64)), asynq.Queue(env.queue), asynq.TaskID("foreign_1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "foreign task archived", func() bool { return env.taskState(t, "foreign_1") == asynq.TaskStateArchived })
	if n := len(sink.requests()); n != 2 {
		t.Fatalf("sink got %d attempts, want 2 (--max-attempts)", n)
	}
}

func TestAttemptOverMaxDurationFailsAndRetries(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 { // outlive the attempt's 1s budget; the worker must give up first
			select {
			case <-r.Context().Done():
			case <-time.After(8 * time.Second):
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := env.config(t)
	cfg.MaxDuration = time.Second
	w := startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 10 * time.Second}))

	start := time.Now()
	enqueue(t, env.opt, env.queue, EventEmailOpened, "msg_slow_1", eventBody(EventEmailOpened, 256), 3, time.Second)
	eventually(t, 20*time.Second, "task completed", func() bool { return env.taskState(t, "msg_slow_1") == asynq.TaskStateCompleted })
	if n := len(sink.requests()); n != 2 {
		t.Fatalf("sink got %d attempts, want 2", n)
	}
	if first := sink.requests()[1].at.Sub(start); first > 7*time.Second {
		t.Errorf("second attempt came %s after enqueue: the slow first attempt was not cut off at 1s", first)
	}
	if v := testutil.ToFloat64(w.metrics.retried.WithLabelValues(EventEmailOpened)); v != 1 {
		t.Errorf("retried = %v, want 1 (the slow attempt counts as a failure)", v)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	release := make(chan struct{})
	sink := newTestSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	w := startWorker(t, env.config(t), withSink(t, SinkConfig{URL: sink.URL, Timeout: 10 * time.Second}))
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_drain_1", eventBody(EventEmailSent, 256), 3, time.Minute)
	eventually(t, 10*time.Second, "attempt in flight", func() bool { return len(sink.requests()) == 1 })

	w.cancel() // SIGTERM
	eventually(t, 5*time.Second, "shutdown began", w.stopping.Load)
	close(release) // the in-flight attempt answers only once shutdown is under way
	if err := <-w.done; err != nil {
		t.Fatal(err)
	}
	close(w.done)
	if st := env.taskState(t, "msg_drain_1"); st != asynq.TaskStateCompleted {
		t.Errorf("task state after shutdown = %v, want completed (in-flight attempt allowed to finish)", st)
	}
}

func TestShutdownHandsUnfinishedBack(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			<-r.Context().Done() // never answers the first attempt
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := env.config(t)
	cfg.ShutdownGrace = 500 * time.Millisecond
	first := startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 10 * time.Second}))
	enqueue(t, env.opt, env.queue, EventEmailSent, "msg_handback_1", eventBody(EventEmailSent, 256), 3, time.Minute)
	eventually(t, 10*time.Second, "attempt in flight", func() bool { return len(sink.requests()) == 1 })
	first.stop(t)
	if st := env.taskState(t, "msg_handback_1"); st != asynq.TaskStatePending {
		t.Fatalf("task state after shutdown = %v, want pending (handed back to Redis)", st)
	}
	startWorker(t, cfg, withSink(t, SinkConfig{URL: sink.URL, Timeout: 10 * time.Second}))
	eventually(t, 10*time.Second, "task completed by a new worker", func() bool { return env.taskState(t, "msg_handback_1") == asynq.TaskStateCompleted })
	reqs := sink.requests()
	if len(reqs) != 2 || reqs[1].header.Get("webhook-id") != "msg_handback_1" {
		t.Errorf("sink requests = %d, want the same event twice", len(reqs))
	}
}

func TestSDKRoutesAndDecodes(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	type seen struct {
		handler string
		ev      *Event
		bounce  *Bounce
		to      []string
	}
	got := make(chan seen, 10)
	w := startWorker(t, env.config(t), func(w *Worker) {
		w.HandleFunc(EventEmailBounced, Typed(func(_ context.Context, ev *Event, d EmailData) error {
			got <- seen{handler: "bounced", ev: ev, bounce: d.Bounce, to: d.To}
			return nil
		}))
		w.HandleFunc("email.*", func(_ context.Context, ev *Event) error {
			got <- seen{handler: "email.*", ev: ev}
			return nil
		})
		w.HandleFunc("domain.*", Typed(func(context.Context, *Event, DomainData) error { return nil }))
	})
	enqueue(t, env.opt, env.queue, EventEmailBounced, "msg_sdk_bounced", eventBody(EventEmailBounced, 0), 3, time.Minute)
	enqueue(t, env.opt, env.queue, EventEmailClicked, "msg_sdk_clicked", eventBody(EventEmailClicked, 0), 3, time.Minute)
	enqueue(t, env.opt, env.queue, EventContactCreated, "msg_sdk_contact", []byte(`{"type":"contact.created","data":{}}`), 3, time.Minute)
	enqueue(t, env.opt, env.queue, EventDomainUpdated, "msg_sdk_domain", []byte(`{"type":"domain.updated","data":{"records":"not a list"}}`), 3, time.Minute)

	byID := map[string]seen{}
	for range 2 {
		select {
		case s := <-got:
			byID[s.ev.ID] = s
		case <-time.After(10 * time.Second):
			t.Fatalf("handlers ran for %d events, want 2", len(byID))
		}
	}
	b := byID["msg_sdk_bounced"]
	if b.handler != "bounced" || b.bounce == nil || b.bounce.SubType != "Suppressed" || len(b.to) != 1 {
		t.Errorf("email.bounced went to %q with bounce %+v to %v; want the exact handler with typed data", b.handler, b.bounce, b.to)
	}
	if b.ev.Type != EventEmailBounced || b.ev.Attempt != 1 || b.ev.MaxAttempts != 3 || b.ev.Webhook != "default/test" ||
		b.ev.CreatedAt.IsZero() || b.ev.ReceivedAt.IsZero() {
		t.Errorf("event fields = %+v", b.ev)
	}
	if c := byID["msg_sdk_clicked"]; c.handler != "email.*" {
		t.Errorf("email.clicked went to %q, want the email.* prefix handler", c.handler)
	}
	// No handler for contact.*: dead-lettered with a clear error. A payload that does not decode:
	// dead-lettered at once too.
	for id, wantErr := range map[string]string{"msg_sdk_contact": `no handler registered for event type "contact.created"`, "msg_sdk_domain": "decode data of domain.updated"} {
		eventually(t, 10*time.Second, id+" archived", func() bool { return env.taskState(t, id) == asynq.TaskStateArchived })
		info, err := env.inspector(t).GetTaskInfo(env.queue, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info.LastErr, wantErr) || info.Retried != 0 {
			t.Errorf("%s: last error %q after %d retries, want %q at once", id, info.LastErr, info.Retried, wantErr)
		}
	}
	if v := testutil.ToFloat64(w.metrics.deadLettered.WithLabelValues(EventContactCreated)); v != 1 {
		t.Errorf("dead_lettered{contact.created} = %v, want 1", v)
	}
}

func TestCommandRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sink-url=http://127.0.0.1:1", "--min-backoff=5s", "--max-backoff=1s"}, "min backoff 5s is greater than max backoff 1s"},
		{[]string{"--sink-url=ftp://example.com/x"}, "scheme must be http or https"},
		{[]string{"--sink-url=http://127.0.0.1:1", "--backoff-factor=0"}, "backoff factor 0"},
		{[]string{"--sink-url=http://127.0.0.1:1", "--max-attempts=0"}, "max attempts 0"},
		{[]string{"--sink-url=http://127.0.0.1:1", "--concurrency=0"}, "concurrency 0"},
		{[]string{"--sink-url=http://127.0.0.1:1", "--redis-url=mysql://x"}, "scheme"},
		{[]string{}, "--sink-url is required"},
		{[]string{"--sink-url=http://127.0.0.1:1", "--sink-secret-file=/nonexistent/secret", "--redis-url=redis://127.0.0.1:1/0", "--admin-listen=127.0.0.1:0"}, "--sink-secret-file"},
		{[]string{"--backoff-factor=1.5"}, "invalid value"},
	} {
		err := run(context.Background(), tc.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	// RWH_* env vars stand in for flags.
	env := map[string]string{"RWH_SINK_URL": "http://127.0.0.1:1", "RWH_MIN_BACKOFF": "20s"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "min backoff 20s is greater than max backoff 10s") {
		t.Errorf("env fallback: %v", err)
	}
}

func TestCommandRunsAndStops(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, status(200))
	port, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--redis-url=" + env.redis.URL(), "--queue=" + env.queue, "--sink-url=" + sink.URL,
			"--admin-listen=" + port, "--poll-interval=100ms", "--min-backoff=1s", "--max-backoff=2s"}, func(string) string { return "" }, io.Discard)
	}()
	enqueue(t, env.opt, env.queue, EventDomainCreated, "msg_cmd_1", []byte(`{"type":"domain.created","data":{"id":"d1"}}`), 3, time.Minute)
	eventually(t, 10*time.Second, "task completed", func() bool { return env.taskState(t, "msg_cmd_1") == asynq.TaskStateCompleted })
	eventually(t, 5*time.Second, "/readyz 200", func() bool { return httpStatus(t, "http://"+port+"/readyz") == http.StatusOK })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop after its context was cancelled")
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func httpStatus(t testing.TB, url string) int {
	resp, err := http.Get(url) //nolint:noctx // test helper on loopback
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func httpBody(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // test helper on loopback
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A custom worker started the way the operator starts the built-in one (subcommand first, the
// same flags) runs its own handlers and forwards the types it has none for to --sink-url.
func TestMainCustomHandlersWithSinkFallback(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	sink := newTestSink(t, status(200))
	handled := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- MainContext(ctx, []string{"worker", "--redis-url=" + env.redis.URL(), "--queue=" + env.queue,
			"--sink-url=" + sink.URL, "--admin-listen=127.0.0.1:0", "--poll-interval=100ms", "--log-level=warn"},
			func(w *Worker) error {
				w.HandleFunc(EventEmailBounced, func(_ context.Context, ev *Event) error { handled <- ev.ID; return nil })
				return nil
			})
	}()
	enqueue(t, env.opt, env.queue, EventEmailBounced, "msg_main_bounced", eventBody(EventEmailBounced, 0), 3, time.Minute)
	enqueue(t, env.opt, env.queue, EventContactCreated, "msg_main_contact", []byte(`{"type":"contact.created","data":{}}`), 3, time.Minute)
	for _, id := range []string{"msg_main_bounced", "msg_main_contact"} {
		eventually(t, 10*time.Second, id+" completed", func() bool { return env.taskState(t, id) == asynq.TaskStateCompleted })
	}
	if id := <-handled; id != "msg_main_bounced" {
		t.Errorf("custom handler got %q", id)
	}
	reqs := sink.requests()
	if len(reqs) != 1 || reqs[0].header.Get("webhook-id") != "msg_main_contact" {
		t.Errorf("sink got %d requests (want only the contact.created event)", len(reqs))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
