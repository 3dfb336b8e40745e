package worker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// enqueue puts one event on the queue exactly as the receiver does (the task format in docs/design.md).
func enqueue(t testing.TB, opt asynq.RedisConnOpt, queue, eventType, svixID string, body []byte, maxAttempts int, maxDuration time.Duration) {
	t.Helper()
	c := asynq.NewClient(opt)
	defer func() { _ = c.Close() }()
	if _, err := c.Enqueue(newReceiverTask(eventType, svixID, body),
		asynq.Queue(queue), asynq.TaskID(svixID), asynq.MaxRetry(maxAttempts-1),
		asynq.Timeout(maxDuration), asynq.Retention(24*time.Hour)); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
}

func newReceiverTask(eventType, svixID string, body []byte) *asynq.Task {
	return asynq.NewTaskWithHeaders(task.TypeName(eventType), body, map[string]string{
		task.HeaderSvixID:        svixID,
		task.HeaderSvixTimestamp: fmt.Sprint(time.Now().Unix()),
		task.HeaderSvixSignature: "v1,c2lnbmF0dXJl",
		task.HeaderReceivedAt:    time.Now().UTC().Format(time.RFC3339),
		task.HeaderWebhook:       "default/test",
	})
}

// eventBody is a Resend-shaped body of about size bytes.
func eventBody(eventType string, size int) []byte {
	data := map[string]any{
		"email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "from": "Acme <onboarding@resend.dev>",
		"to": []string{"delivered@resend.dev"}, "subject": "Hello", "created_at": "2026-11-28T10:00:00.000Z",
		"bounce": map[string]string{"type": "Permanent", "subType": "Suppressed", "message": "suppressed"},
	}
	b, _ := json.Marshal(map[string]any{"type": eventType, "created_at": "2026-11-28T10:00:01.000Z", "data": data})
	if pad := size - len(b); pad > 20 {
		data["padding"] = strings.Repeat("x", pad-20)
		b, _ = json.Marshal(map[string]any{"type": eventType, "created_at": "2026-11-28T10:00:01.000Z", "data": data})
	}
	return b
}

// sinkRequest is what the test sink saw.
type sinkRequest struct {
	at                time.Time
	method, uri, host string
	header            http.Header
	body              []byte
	length            int64
}

// testSink is a real HTTP server on loopback that records requests; respond decides the
// answer of the n-th request (0-based).
type testSink struct {
	*httptest.Server
	conns atomic.Int64 // connections accepted
	mu    sync.Mutex
	reqs  []sinkRequest
	codes []int
}

// down reports whether the last answer was not a 2xx.
func (s *testSink) down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.codes) == 0 || s.codes[len(s.codes)-1]/100 != 2
}

// statusRecorder remembers the status a test sink's handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }

func newTestSink(t testing.TB, respond func(n int, w http.ResponseWriter, r *http.Request)) *testSink {
	s := &testSink{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, sinkRequest{at: time.Now(), method: r.Method, uri: r.RequestURI, host: r.Host,
			header: r.Header.Clone(), body: body, length: r.ContentLength})
		s.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		respond(n, rec, r)
		s.mu.Lock()
		s.codes = append(s.codes, rec.code)
		s.mu.Unlock()
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *testSink) requests() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkRequest(nil), s.reqs...)
}

func status(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[min(n, len(codes)-1)])
	}
}

var eventually = testutil.EventuallyTrue

// writeSecret writes a fresh whsec_ secret to a file and returns both.
func writeSecret(t testing.TB) (secret, path string) {
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	secret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	path = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret, path
}

// testEnv is one private Redis and queue.
type testEnv struct {
	redis *testutil.Redis
	opt   asynq.RedisConnOpt
	queue string
}

func newTestEnv(t testing.TB) *testEnv {
	r := testutil.StartRedis(t)
	return &testEnv{redis: r, opt: asynq.RedisClientOpt{Addr: r.Addr()}, queue: "ns.test"}
}

func (e *testEnv) config(t testing.TB) Config {
	return Config{
		Redis: e.opt, Queue: e.queue, Concurrency: 4,
		Retry:        RetryPolicy{MaxAttempts: 3, Factor: 2, MinBackoff: time.Second, MaxBackoff: 2 * time.Second, Randomize: true},
		MaxDuration:  10 * time.Second,
		PollInterval: 100 * time.Millisecond, ShutdownGrace: 5 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

func (e *testEnv) inspector(t testing.TB) *asynq.Inspector {
	i := asynq.NewInspector(e.opt)
	t.Cleanup(func() { _ = i.Close() })
	return i
}

// taskState returns the asynq state of a task ("" while it cannot be read).
func (e *testEnv) taskState(t testing.TB, id string) asynq.TaskState {
	info, err := e.inspector(t).GetTaskInfo(e.queue, id)
	if err != nil {
		return 0
	}
	return info.State
}

// runningWorker runs w until the test ends (or stop is called) and reports Run's error.
type runningWorker struct {
	*Worker
	cancel context.CancelFunc
	done   chan error
	admin  chan net.Addr
}

func startWorker(t testing.TB, cfg Config, setup func(*Worker)) *runningWorker {
	t.Helper()
	rw := &runningWorker{done: make(chan error, 1), admin: make(chan net.Addr, 1)}
	if cfg.AdminListen != "" {
		cfg.OnAdminListen = func(a net.Addr) { rw.admin <- a }
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	setup(w)
	rw.Worker = w
	ctx, cancel := context.WithCancel(context.Background())
	rw.cancel = cancel
	go func() { rw.done <- w.Run(ctx) }()
	t.Cleanup(func() { rw.stop(t) })
	return rw
}

// stop cancels Run and waits for it (idempotent).
func (rw *runningWorker) stop(t testing.TB) {
	rw.cancel()
	select {
	case err, ok := <-rw.done:
		if ok && err != nil {
			t.Errorf("worker Run: %v", err)
		}
		if ok {
			close(rw.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("worker did not stop within 30s")
	}
}

// withSink registers the sink forwarder for every event type.
func withSink(t testing.TB, cfg SinkConfig) func(*Worker) {
	return func(w *Worker) {
		s, err := NewSink(cfg, w.Logger(), w.Registry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		w.Handle("*", s)
	}
}

// testWriter sends worker logs to t.Log (shown with -v or on failure).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
