package receiver

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

func TestSvixTestVector(t *testing.T) {
	wh, err := svix.NewWebhook(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if err != nil || sig != vectorSignature {
		t.Fatalf("svix Sign = %q, %v; want the published %q", sig, err, vectorSignature)
	}

	// The vector's body has no "type": accepted signature, then 400 no_type. That proves the
	// verification path passed (a bad signature would be 401).
	f := newFixture(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(vectorTimestamp+10, 0) } })
	hdr := http.Header{}
	hdr.Set("svix-id", vectorID)
	hdr.Set("svix-timestamp", strconv.Itoa(vectorTimestamp))
	hdr.Set("svix-signature", vectorSignature)
	if r := f.post(t, hdr, []byte(vectorBody)); r.code != http.StatusBadRequest || !strings.Contains(r.body, "type") {
		t.Fatalf("published vector: got %d %s, want 400 for the missing type (signature accepted)", r.code, r.body)
	}
	if got := f.count("400", "no_type"); got != 1 {
		t.Fatalf("no_type count = %v, want 1", got)
	}
	// One byte changed: the signature no longer matches.
	if r := f.post(t, hdr, []byte(`{"test": 2432232315}`)); r.code != http.StatusUnauthorized {
		t.Fatalf("tampered body: got %d %s, want 401", r.code, r.body)
	}
	// Several signatures in the header (Svix sends one per secret version): any may match.
	hdr.Set("svix-signature", "v1,AAAAbm90IGl0 v2,ignored "+vectorSignature)
	if r := f.post(t, hdr, []byte(vectorBody)); r.code != http.StatusBadRequest {
		t.Fatalf("multi-signature header: got %d %s, want 400 (signature accepted)", r.code, r.body)
	}
	// The real clock: the vector is from 2021, far outside the tolerance.
	g := newFixture(t, nil)
	hdr.Set("svix-signature", vectorSignature)
	if r := g.post(t, hdr, []byte(vectorBody)); r.code != http.StatusUnauthorized || !strings.Contains(r.body, "tolerance") {
		t.Fatalf("old vector with the real clock: got %d %s, want 401 timestamp", r.code, r.body)
	}
}

func TestStatusTable(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Events = []string{"email.bounced", "email.delivered"} })
	now := time.Now()
	n := 0
	nextID := func() string { n++; return fmt.Sprintf("msg_status_%d", n) }
	valid := func(body []byte) http.Header { return signed(t, vectorSecret, nextID(), now, body) }
	big := bytes.Repeat([]byte("x"), 5000) // over MaxBodyBytes 4096
	without := func(h http.Header, key string) http.Header { h.Del(key); return h }
	with := func(h http.Header, key, v string) http.Header { h.Set(key, v); return h }

	for _, tc := range []struct {
		name, method string
		hdr          http.Header
		body         io.Reader
		code         int
		reason       string
		enqueued     int // tasks in the queue afterwards
	}{
		{"GET", http.MethodGet, valid(event("email.bounced")), nil, 405, "method", 0},
		{"PUT with an oversize body: 405 first", http.MethodPut, nil, bytes.NewReader(big), 405, "method", 0},
		{"oversize with Content-Length", http.MethodPost, valid(big), bytes.NewReader(big), 413, "too_large", 0},
		{"oversize chunked (no Content-Length)", http.MethodPost, valid(big), io.MultiReader(bytes.NewReader(big)), 413, "too_large", 0},
		{"oversize without headers: 413 first", http.MethodPost, nil, bytes.NewReader(big), 413, "too_large", 0},
		{"no svix headers", http.MethodPost, nil, bytes.NewReader(event("email.bounced")), 400, "missing_headers", 0},
		{"no svix-signature", http.MethodPost, without(valid(event("email.bounced")), "svix-signature"), bytes.NewReader(event("email.bounced")), 400, "missing_headers", 0},
		{"no svix-id", http.MethodPost, without(valid(event("email.bounced")), "svix-id"), bytes.NewReader(event("email.bounced")), 400, "missing_headers", 0},
		{"svix-id with a space", http.MethodPost, with(valid(event("email.bounced")), "svix-id", "msg 1"), bytes.NewReader(event("email.bounced")), 400, "malformed_id", 0},
		{"timestamp not a number", http.MethodPost, with(valid(event("email.bounced")), "svix-timestamp", "yesterday"), bytes.NewReader(event("email.bounced")), 400, "malformed_timestamp", 0},
		{"timestamp in ms", http.MethodPost, with(valid(event("email.bounced")), "svix-timestamp", "1.5"), bytes.NewReader(event("email.bounced")), 400, "malformed_timestamp", 0},
		{"timestamp 6 min old", http.MethodPost, signed(t, vectorSecret, nextID(), now.Add(-6*time.Minute), event("email.bounced")), bytes.NewReader(event("email.bounced")), 401, "timestamp", 0},
		{"timestamp 6 min ahead", http.MethodPost, signed(t, vectorSecret, nextID(), now.Add(6*time.Minute), event("email.bounced")), bytes.NewReader(event("email.bounced")), 401, "timestamp", 0},
		{"signed with another secret", http.MethodPost, signed(t, otherSecret, nextID(), now, event("email.bounced")), bytes.NewReader(event("email.bounced")), 401, "signature", 0},
		{"garbage signature, body not JSON: 401 first", http.MethodPost, with(valid(event("x")), "svix-signature", "v1,Zm9v"), strings.NewReader("not json"), 401, "signature", 0},
		{"signed body not JSON", http.MethodPost, valid([]byte("not json")), strings.NewReader("not json"), 400, "body_not_json", 0},
		{"signed JSON without type", http.MethodPost, valid([]byte(`{"data":{}}`)), strings.NewReader(`{"data":{}}`), 400, "no_type", 0},
		{"signed JSON, type a number", http.MethodPost, valid([]byte(`{"type":7}`)), strings.NewReader(`{"type":7}`), 400, "no_type", 0},
		{"signed JSON array", http.MethodPost, valid([]byte(`[1]`)), strings.NewReader(`[1]`), 400, "no_type", 0},
		{"signed, type with a newline", http.MethodPost, valid([]byte(`{"type":"a\nb"}`)), strings.NewReader(`{"type":"a\nb"}`), 400, "bad_type", 0},
		{"signed, type not in --events", http.MethodPost, valid(event("email.opened")), bytes.NewReader(event("email.opened")), 200, "filtered", 0},
		{"signed, wanted type", http.MethodPost, valid(event("email.bounced")), bytes.NewReader(event("email.bounced")), 200, "enqueued", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count(strconv.Itoa(tc.code), tc.reason)
			r := do(t, tc.method, f.server.URL+"/any/path", tc.hdr, tc.body)
			if r.code != tc.code || !strings.Contains(r.body, "\n") {
				t.Fatalf("got %d %q, want %d (%s)", r.code, r.body, tc.code, tc.reason)
			}
			if got := f.count(strconv.Itoa(tc.code), tc.reason) - before; got != 1 {
				t.Errorf("requests_total{code=%d,reason=%s} grew by %v, want 1", tc.code, tc.reason, got)
			}
			if got := f.tasks(t, "ns.hook"); got != tc.enqueued {
				t.Errorf("tasks in queue = %d, want %d", got, tc.enqueued)
			}
			if tc.code == 405 && r.hdr.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
		})
	}
	if got := metricValue(f.metrics.filtered); got != 1 {
		t.Errorf("filtered_total = %v, want 1", got)
	}
}

func TestEnqueuedTaskFormat(t *testing.T) {
	f := newFixture(t, nil)
	body := event("email.bounced")
	body = append(body, "  \n"...) // byte for byte, trailing whitespace included
	hdr := signed(t, vectorSecret, "msg_format_1", time.Now(), body)
	before := time.Now().UTC().Truncate(time.Second)
	if r := f.post(t, hdr, body); r.code != 200 || !strings.Contains(r.body, "enqueued") {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	info, err := f.insp.GetTaskInfo("ns.hook", "msg_format_1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != "resend:email.bounced" || info.Type != task.TypeName("email.bounced") {
		t.Errorf("type = %q", info.Type)
	}
	if !bytes.Equal(info.Payload, body) {
		t.Errorf("payload = %q, want the body byte for byte", info.Payload)
	}
	if info.Queue != "ns.hook" || info.ID != "msg_format_1" {
		t.Errorf("queue/id = %q/%q", info.Queue, info.ID)
	}
	if info.MaxRetry != 3 || info.Timeout != 30*time.Second || info.Retention != time.Hour {
		t.Errorf("MaxRetry/Timeout/Retention = %d/%s/%s, want 3/30s/1h", info.MaxRetry, info.Timeout, info.Retention)
	}
	h := info.Headers
	if h[task.HeaderSvixID] != "msg_format_1" || h[task.HeaderSvixTimestamp] != hdr.Get("svix-timestamp") ||
		h[task.HeaderSvixSignature] != hdr.Get("svix-signature") || h[task.HeaderWebhook] != "ns/hook" || len(h) != 5 {
		t.Errorf("headers = %v", h)
	}
	at, err := time.Parse(time.RFC3339, h[task.HeaderReceivedAt])
	if err != nil || !strings.HasSuffix(h[task.HeaderReceivedAt], "Z") || at.Before(before) || at.After(time.Now()) {
		t.Errorf("received-at = %q (%v), want RFC 3339 UTC of now", h[task.HeaderReceivedAt], err)
	}
	// The payload still verifies with the task's headers, as a worker may do.
	wh, _ := svix.NewWebhook(vectorSecret)
	th := http.Header{}
	for k, v := range h {
		th.Set(k, v)
	}
	if err := wh.VerifyIgnoringTimestamp(info.Payload, th); err != nil {
		t.Errorf("task does not verify: %v", err)
	}
}

func TestDuplicateDelivery(t *testing.T) {
	f := newFixture(t, nil)
	first := event("email.delivered")
	hdr := signed(t, vectorSecret, "msg_dup", time.Now(), first)
	if r := f.post(t, hdr, first); r.code != 200 || !strings.Contains(r.body, "enqueued") {
		t.Fatalf("first: %d %s", r.code, r.body)
	}
	// Svix re-delivers: same id, new timestamp and signature.
	hdr = signed(t, vectorSecret, "msg_dup", time.Now().Add(time.Second), first)
	if r := f.post(t, hdr, first); r.code != 200 || !strings.Contains(r.body, "duplicate") {
		t.Fatalf("re-delivery: %d %s, want 200 duplicate", r.code, r.body)
	}
	// Same id, different content: still the first task.
	other := event("email.bounced")
	if r := f.post(t, signed(t, vectorSecret, "msg_dup", time.Now(), other), other); r.code != 200 {
		t.Fatalf("same id, other body: %d %s", r.code, r.body)
	}
	if n := f.tasks(t, "ns.hook"); n != 1 {
		t.Fatalf("tasks = %d, want 1", n)
	}
	info, err := f.insp.GetTaskInfo("ns.hook", "msg_dup")
	if err != nil || !bytes.Equal(info.Payload, first) {
		t.Fatalf("task = %v, %v; want the first delivery", info, err)
	}
	// A dead-lettered event stays known: a re-delivery is not re-enqueued.
	if err := f.insp.ArchiveTask("ns.hook", "msg_dup"); err != nil {
		t.Fatal(err)
	}
	if r := f.post(t, signed(t, vectorSecret, "msg_dup", time.Now(), first), first); r.code != 200 || !strings.Contains(r.body, "duplicate") {
		t.Fatalf("re-delivery of an archived task: %d %s", r.code, r.body)
	}
	if got := metricValue(f.metrics.duplicates); got != 3 {
		t.Fatalf("duplicates_total = %v, want 3", got)
	}
}

func TestRedisDownThenBack(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.EnqueueTimeout = 3 * time.Second })
	body := event("email.sent")
	if r := f.post(t, signed(t, vectorSecret, "msg_up_1", time.Now(), body), body); r.code != 200 {
		t.Fatalf("before: %d %s", r.code, r.body)
	}
	f.redis.Stop()
	// No background probe here (Options.RedisHealth is nil): the enqueue is tried and fails.
	r := f.post(t, signed(t, vectorSecret, "msg_down", time.Now(), body), body)
	if r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "enqueue") {
		t.Fatalf("redis down: %d %q Retry-After=%q, want 503 with Retry-After", r.code, r.body, r.hdr.Get("Retry-After"))
	}
	if got := f.count("503", "enqueue_failed"); got != 1 {
		t.Errorf("requests_total{503,enqueue_failed} = %v, want 1", got)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"level":"WARN","msg":"webhook","svix_id":"msg_down"`) || !strings.Contains(logs, `"reason":"enqueue_failed","latency_ms":`) || !strings.Contains(logs, `"error":`) {
		t.Errorf("the failed enqueue is not logged with its error:\n%s", logs)
	}
	if err := f.redis.Start(); err != nil {
		t.Fatal(err)
	}
	// Same client, same handler: no restart. The id of the failed request works now (Svix retries).
	eventually(t, 10*time.Second, "200 after redis restarted", func() bool {
		return f.post(t, signed(t, vectorSecret, "msg_down", time.Now(), body), body).code == 200
	})
	// The restarted redis lost its data, so asynq's queue set is empty (the command's readiness
	// probe re-adds the queue; see TestCommandRedisOutage): look at the task key itself.
	if n, err := f.redis.Client(t).Exists(t.Context(), "asynq:{ns.hook}:t:msg_down").Result(); err != nil || n != 1 {
		t.Fatalf("task after recovery: exists=%d, %v", n, err)
	}
}

func TestDrainingAnswers503(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Events = []string{"email.sent"} })
	f.handler.Drain()
	body := event("email.sent")
	r := f.post(t, signed(t, vectorSecret, "msg_drain", time.Now(), body), body)
	if r.code != 503 || r.hdr.Get("Retry-After") != retryAfterSeconds || !strings.Contains(r.body, "shutting down") {
		t.Fatalf("draining: %d %q", r.code, r.body)
	}
	if n := f.tasks(t, "ns.hook"); n != 0 {
		t.Fatalf("tasks = %d while draining", n)
	}
	// Precedence still holds while draining: a forgery is 401, not 503.
	if r := f.post(t, signed(t, otherSecret, "msg_drain", time.Now(), body), body); r.code != 401 {
		t.Fatalf("forgery while draining: %d", r.code)
	}
	if metricValue(f.metrics.draining) != 1 {
		t.Fatal("draining gauge not set")
	}
}

// With no valid secret loaded, no signature can match: 401 per the status table (readiness
// fails too, so a pod in this state gets no traffic behind a Service).
func TestNoSecretsAnswers401(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Secrets = StaticSecrets(nil) })
	body := event("email.sent")
	r := f.post(t, signed(t, vectorSecret, "msg_nosecret", time.Now(), body), body)
	if r.code != http.StatusUnauthorized || !strings.Contains(r.body, "no valid signing secret") {
		t.Fatalf("no secrets: %d %q", r.code, r.body)
	}
}

func TestLogsCarryIDsButNoSecrets(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"type":"email.clicked","data":{"secret_marker":"BODYCONTENT"}}`)
	hdr := signed(t, vectorSecret, "msg_log_1", time.Now(), body)
	if r := f.post(t, hdr, body); r.code != 200 {
		t.Fatal(r.code)
	}
	bad := signed(t, otherSecret, "msg_log_2", time.Now(), body)
	if r := f.post(t, bad, body); r.code != 401 {
		t.Fatal(r.code)
	}
	logs := f.logs.String()
	for _, want := range []string{`"svix_id":"msg_log_1"`, `"event_type":"email.clicked"`, `"status":200`, `"svix_id":"msg_log_2"`, `"status":401`, `"reason":"signature"`, `"latency_ms":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	for _, never := range []string{"BODYCONTENT", strings.TrimPrefix(vectorSecret, "whsec_"), strings.TrimPrefix(otherSecret, "whsec_"),
		strings.TrimPrefix(hdr.Get("svix-signature"), "v1,"), strings.TrimPrefix(bad.Get("svix-signature"), "v1,")} {
		if strings.Contains(logs, never) {
			t.Errorf("logs contain %q", never)
		}
	}
}

func TestNewHandlerRejectsIncompleteOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never used
	t.Cleanup(func() { _ = c.Close() })
	other := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = other.Close() })
	foreign, err := NewEnqueuer(other, EnqueuerOptions{Batch: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{}, {Redis: c}, {Redis: c, Secrets: StaticSecrets(nil)}, {Redis: c, Secrets: StaticSecrets(nil), Queue: "q", MaxAttempts: -1},
		{Redis: c, Secrets: StaticSecrets(nil), Queue: "q", Enqueuer: foreign}} {
		if _, err := NewHandler(o); err == nil {
			t.Errorf("NewHandler(%+v) succeeded", o)
		}
	}
}

// Asynq stores Timeout and Retention in whole seconds, truncating; the handler rounds up so an
// attempt never gets less time than --max-duration says.
func TestSubSecondDurationsRoundUp(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.MaxDuration = 1500 * time.Millisecond
		o.DedupWindow = 90*time.Second + time.Millisecond
		o.Tolerance = 45 * time.Second
	})
	body := event("email.sent")
	if r := f.post(t, signed(t, vectorSecret, "msg_round", time.Now(), body), body); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	info, err := f.insp.GetTaskInfo("ns.hook", "msg_round")
	if err != nil {
		t.Fatal(err)
	}
	if info.Timeout != 2*time.Second || info.Retention != 91*time.Second {
		t.Fatalf("Timeout/Retention = %s/%s, want 2s/1m31s", info.Timeout, info.Retention)
	}
}
