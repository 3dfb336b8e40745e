package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// fuzzNow is the fixed clock of FuzzHandler; the signed seeds use timestamp 1700000000.
var fuzzNow = time.Unix(1700000000, 0)

// FuzzHandler drives the handler with arbitrary methods, headers and bodies against a real
// redis-server and checks the contract's invariants, including what each answer left in Redis.
// When sign is true the harness replaces the signature with a valid one, so the fuzzer also
// explores what follows verification. redisDown makes the background probe report an outage;
// overloaded occupies every --max-in-flight slot. Seeds: testdata/fuzz/FuzzHandler (replayed
// by every `go test`).
func FuzzHandler(f *testing.F) {
	const maxBody = 1024
	wanted := []string{"email.sent", "email.bounced", "email.delivered"}
	var down atomic.Bool
	fx := newFixture(f, func(o *Options) {
		o.Queue = "fuzz"
		o.Events = wanted
		o.MaxBodyBytes = maxBody
		o.Now = func() time.Time { return fuzzNow }
		o.Logger = nil
		o.MaxInFlight = 4
		o.RedisHealth = func() error {
			if down.Load() {
				return errors.New("probe: connection refused")
			}
			return nil
		}
	})
	wh, err := svix.NewWebhook(vectorSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("POST", "msg_seed", "1700000000", "v1,AAAA", []byte(`{"type":"email.sent"}`), true, false, false)

	f.Fuzz(func(t *testing.T, method, id, ts, sig string, body []byte, sign, redisDown, overloaded bool) {
		if sign {
			if unix, err := strconv.ParseInt(ts, 10, 64); err == nil {
				sig, _ = wh.Sign(id, time.Unix(unix, 0), body)
			}
		}
		req, err := http.NewRequest(method, "http://receiver.test/", bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request net/http would deliver")
		}
		for k, v := range map[string]string{"svix-id": id, "svix-timestamp": ts, "svix-signature": sig} {
			if v != "" && isHeaderValue(v) {
				req.Header.Set(k, v)
			}
		}
		before := fx.tasks(t, "fuzz")
		_, existed := fx.task(t, "fuzz", id)
		down.Store(redisDown)
		if overloaded { // as if maxInFlight other requests were being served
			fx.handler.inFlight.Add(fx.handler.maxInFlight)
		}
		rec := httptest.NewRecorder()
		fx.handler.ServeHTTP(rec, req)
		if overloaded {
			fx.handler.inFlight.Add(-fx.handler.maxInFlight)
		}
		code, answer := rec.Code, rec.Body.String()
		after := fx.tasks(t, "fuzz")

		if !slices.Contains([]int{200, 400, 401, 405, 413, 503}, code) {
			t.Fatalf("status %d is not in the table", code)
		}
		if code == 503 && rec.Header().Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		// Only a 200 that enqueued adds a task; every other answer leaves Redis as it was.
		if answer != string(outcomes[outEnqueued].body) && after != before {
			t.Fatalf("%d %q changed the task count from %d to %d", code, answer, before, after)
		}
		switch {
		case overloaded:
			if answer != string(outcomes[outOverloaded].body) {
				t.Fatalf("with every slot taken: %d %q, want 503 overloaded first", code, answer)
			}
			return
		case method != http.MethodPost:
			if code != 405 {
				t.Fatalf("%s answered %d, want 405", method, code)
			}
			return
		case len(body) > maxBody:
			if code != 413 {
				t.Fatalf("%d-byte body answered %d, want 413", len(body), code)
			}
			return
		}
		// The handler's signature check says what svix says: a 401 signature only for a request
		// svix rejects (a 200 only for one it accepts, below).
		if answer == string(outcomes[outSignature].body) && wh.VerifyIgnoringTimestamp(body, req.Header) == nil {
			t.Fatalf("401 signature for a request svix verifies (id %q, timestamp %q, signature %q)", id, ts, sig)
		}
		if code == 503 && (!redisDown || answer != string(outcomes[outRedisDown].body)) {
			t.Fatalf("503 %q with redis reported down %v; only redis_down is possible here", answer, redisDown)
		}
		if code != 200 {
			return
		}
		// 2xx: the request must be genuine and within tolerance ...
		unix, err := strconv.ParseInt(req.Header.Get("svix-timestamp"), 10, 64)
		if err != nil || fuzzNow.Sub(time.Unix(unix, 0)).Abs() > 5*time.Minute {
			t.Fatalf("200 for timestamp %q", ts)
		}
		if err := wh.VerifyIgnoringTimestamp(body, req.Header); err != nil {
			t.Fatalf("200 for a request that does not verify: %v", err)
		}
		var ev struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" {
			t.Fatalf("200 for a body without type: %v", err)
		}
		// ... and filtered, a duplicate of a task that was there, or exactly one new task.
		switch answer {
		case string(outcomes[outFiltered].body):
			if slices.Contains(wanted, ev.Type) {
				t.Fatalf("wanted type %q was filtered", ev.Type)
			}
		case string(outcomes[outDuplicate].body):
			if !existed || redisDown {
				t.Fatalf("duplicate of %q: task there before %v, redis reported down %v", id, existed, redisDown)
			}
		case string(outcomes[outEnqueued].body):
			info, ok := fx.task(t, "fuzz", id)
			if existed || redisDown || after != before+1 || !ok {
				t.Fatalf("enqueued %q: task there before %v, redis reported down %v, tasks %d → %d, now there %v", id, existed, redisDown, before, after, ok)
			}
			if !bytes.Equal(info.Payload, body) || info.Type != task.TypeName(ev.Type) {
				t.Fatalf("task %q holds type %q payload %q; want %q %q", id, info.Type, info.Payload, task.TypeName(ev.Type), body)
			}
		default:
			t.Fatalf("200 with body %q", answer)
		}
	})
}

// isHeaderValue reports whether net/http would send v as a header value.
func isHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\r\n\x00") && strings.TrimSpace(v) == v
}
