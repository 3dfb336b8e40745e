package receiver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	f := &fixture{redis: r, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	conn := asynq.RedisClientOpt{Addr: r.Addr(), PoolSize: 16, DialTimeout: time.Second}
	f.client = asynq.NewClient(conn)
	t.Cleanup(func() { _ = f.client.Close() })
	f.insp = asynq.NewInspector(conn)
	t.Cleanup(func() { _ = f.insp.Close() })
	secrets, err := NewStaticSecrets(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	f.metrics = NewMetrics(f.reg, "ns/hook")
	f.opts = Options{
		Client: f.client, Secrets: secrets, Queue: "ns.hook", Webhook: "ns/hook",
		MaxAttempts: 4, MaxDuration: 30 * time.Second, DedupWindow: time.Hour,
		MaxBodyBytes: 4096, Tolerance: 5 * time.Minute, EnqueueTimeout: 2 * time.Second,
		Metrics: f.metrics, Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&f.opts)
	}
	f.handler, err = NewHandler(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.server = httptest.NewServer(f.handler)
	t.Cleanup(f.server.Close)
	return f
}

// signed returns svix headers for body, signed with secret at ts.
func signed(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h
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

func do(t testing.TB, method, url string, hdr http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: string(b), hdr: resp.Header}
}

// tasks is the number of tasks of any state in the queue.
func (f *fixture) tasks(t testing.TB, queue string) int {
	t.Helper()
	info, err := f.insp.GetQueueInfo(queue)
	if err != nil {
		return 0 // the queue does not exist yet
	}
	return info.Size + info.Completed
}

func (f *fixture) count(code, reason string) float64 {
	return testutil.ToFloat64(f.metrics.requests.WithLabelValues(code, reason))
}

var eventually = rwhtest.EventuallyTrue

type syncBuffer = rwhtest.LogBuffer

func metricValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
