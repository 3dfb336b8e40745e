package receiver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	svix "github.com/svix/svix-webhooks/go"

	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Svix's published test vector.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// otherSecret is a second valid secret (base64 of 24 bytes), for rotation.
const otherSecret = "whsec_QWxsIHlvdXIgYmFzZSBhcmUgYmVsb25nIHRv"

// fixture is a handler in front of a private redis-server.
type fixture struct {
	redis   *rwhtest.Redis
	client  *asynq.Client
	insp    *asynq.Inspector
	handler *Handler
	server  *httptest.Server
	reg     *prometheus.Registry
	metrics *Metrics
	logs    *syncBuffer
	opts    Options
}

// newFixture starts redis and serves a handler; mod adjusts the options first.
func newFixture(t testing.TB, mod func(*Options)) *fixture {
	t.Helper()
	r := rwhtest.StartRedis(t)
	f := &fixture{redis: r, logs: &syncBuffer{}}
	conn := asynq.RedisClientOpt{Addr: r.Addr(), PoolSize: 16, DialTimeout: time.Second}
	f.client = asynq.NewClient(conn)
	t.Cleanup(func() { _ = f.client.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), PoolSize: 16, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	f.insp = asynq.NewInspector(conn)
	t.Cleanup(func() { _ = f.insp.Close() })
	secrets, err := NewStaticSecrets(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	f.opts = Options{
		Redis: rdb, Secrets: secrets, Queue: "ns.hook", Webhook: "ns/hook",
		MaxAttempts: 4, MaxDuration: 30 * time.Second, DedupWindow: time.Hour,
		MaxBodyBytes: 4096, Tolerance: 5 * time.Minute, EnqueueTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	f.serve(t, mod)
	return f
}

// serve replaces the fixture's handler (fresh metrics) with one made from its options after
// mod, e.g. once a test has set up what the options need from the fixture's redis.
func (f *fixture) serve(t testing.TB, mod func(*Options)) {
	t.Helper()
	f.reg = prometheus.NewRegistry()
	f.metrics = NewMetrics(f.reg, "ns/hook")
	f.opts.Metrics = f.metrics
	if mod != nil {
		mod(&f.opts)
	}
	h, err := NewHandler(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if f.server != nil {
		f.server.Close()
	}
	f.handler = h
	f.server = httptest.NewServer(h)
	t.Cleanup(f.server.Close)
}

// signed returns svix headers for body, signed with secret at ts.
func signed(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	h, err := sign(secret, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sign is signed for goroutines other than the test's: it returns the error.
func sign(secret, id string, ts time.Time, body []byte) (http.Header, error) {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h, nil
}

// event is a Resend-like body of the given type.
func event(typ string) []byte {
	return fmt.Appendf(nil, `{"type":%q,"created_at":"2026-01-01T00:00:00.000Z","data":{"email_id":"4ef9a417","to":["a@example.com"]}}`, typ)
}

type response struct {
	code int
	body string
	hdr  http.Header
}

func (f *fixture) post(t testing.TB, hdr http.Header, body []byte) response {
	t.Helper()
	return do(t, http.MethodPost, f.server.URL+"/webhook", hdr, bytes.NewReader(body))
}

// deliver posts body as Resend would: signed with the fixture's secret, now.
func (f *fixture) deliver(t testing.TB, id string, body []byte) response {
	t.Helper()
	return f.post(t, signed(t, vectorSecret, id, time.Now(), body), body)
}

func do(t testing.TB, method, url string, hdr http.Header, body io.Reader) response {
	t.Helper()
	r, err := tryDo(method, url, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryDo is do for goroutines other than the test's: it returns the error.
func tryDo(method, url string, hdr http.Header, body io.Reader) (response, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		return response{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: string(b), hdr: resp.Header}, err
}

// tasks is the number of tasks of any state in the queue; 0 only when asynq does not list the
// queue. Any error fails the test: an unreadable queue is not an empty one.
func (f *fixture) tasks(t testing.TB, queue string) int {
	t.Helper()
	queues, err := f.insp.Queues()
	if err != nil {
		t.Fatalf("list queues: %v", err)
	}
	if !slices.Contains(queues, queue) {
		return 0
	}
	info, err := f.insp.GetQueueInfo(queue)
	if err != nil {
		t.Fatalf("queue %s: %v", queue, err)
	}
	return info.Size + info.Completed
}

// task is the task with this id, and whether there is one. Errors other than "no such task or
// queue" fail the test.
func (f *fixture) task(t testing.TB, queue, id string) (*asynq.TaskInfo, bool) {
	t.Helper()
	info, err := f.insp.GetTaskInfo(queue, id)
	switch {
	case err == nil:
		return info, true
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return nil, false
	}
	t.Fatalf("task %s/%s: %v", queue, id, err)
	return nil, false
}

func (f *fixture) count(code, reason string) float64 {
	return testutil.ToFloat64(f.metrics.requests.WithLabelValues(code, reason))
}

var eventually = rwhtest.EventuallyTrue

type syncBuffer = rwhtest.LogBuffer

func metricValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// partial is a webhook POST whose headers and first bytes of body are sent: the server is
// serving it and waits for the rest.
type partial struct {
	conn net.Conn
	rest []byte
}

// startPartial sends a POST of body to url (http://host:port/…) with all but the last
// len(body)-sent bytes of body.
func startPartial(t testing.TB, url string, hdr http.Header, body []byte, sent int) *partial {
	t.Helper()
	host, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a bound for a broken test, not a wait
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", len(body))
	for k := range hdr {
		fmt.Fprintf(&req, "%s: %s\r\n", k, hdr.Get(k))
	}
	req.WriteString("\r\n")
	req.Write(body[:sent])
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	return &partial{conn: conn, rest: body[sent:]}
}

// finish sends the rest of the body and reads the answer.
func (p *partial) finish(t testing.TB) response {
	t.Helper()
	if _, err := p.conn.Write(p.rest); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(p.conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: string(b), hdr: resp.Header}
}
