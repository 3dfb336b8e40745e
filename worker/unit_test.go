package worker

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestRetryPolicyDelay(t *testing.T) {
	t.Parallel()
	s := time.Second
	for _, tc := range []struct {
		name string
		p    RetryPolicy
		n    int
		rnd  float64
		want time.Duration
	}{
		{"defaults n=1", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 1, 0, s},
		{"defaults n=2", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 2, 0, 2 * s},
		{"defaults n=3", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 3, 0, 4 * s},
		{"defaults n=4", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 4, 0, 8 * s},
		{"capped n=5", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 5, 0, 10 * s},
		{"factor 3 n=3", RetryPolicy{Factor: 3, MinBackoff: 500 * time.Millisecond, MaxBackoff: time.Minute}, 3, 0, 4500 * time.Millisecond},
		{"factor 1 is constant", RetryPolicy{Factor: 1, MinBackoff: 3 * s, MaxBackoff: time.Minute}, 7, 0, 3 * s},
		{"min equals max", RetryPolicy{Factor: 2, MinBackoff: 5 * s, MaxBackoff: 5 * s}, 1, 0, 5 * s},
		{"rnd ignored unless randomized", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 2, 0.5, 2 * s},
		{"randomized R=1.5", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s, Randomize: true}, 2, 0.5, 3 * s},
		{"randomized R=1", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s, Randomize: true}, 1, 0, s},
		{"randomized capped", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s, Randomize: true}, 4, 0.9, 10 * s},
		{"rnd out of range is clamped below 2", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: time.Hour, Randomize: true}, 1, 7, 2*s - 1},
		{"n=0 treated as 1", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 0, 0, s},
		{"n=64 does not overflow", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, 64, 0, 10 * s},
		{"n=1000 factor 10 does not overflow", RetryPolicy{Factor: 10, MinBackoff: s, MaxBackoff: time.Hour, Randomize: true}, 1000, 0.99, time.Hour},
		{"max int n", RetryPolicy{Factor: 2, MinBackoff: s, MaxBackoff: 10 * s}, int(^uint(0) >> 1), 0, 10 * s},
	} {
		if got := tc.p.Delay(tc.n, tc.rnd); got != tc.want {
			t.Errorf("%s: Delay(%d, %v) = %s, want %s", tc.name, tc.n, tc.rnd, got, tc.want)
		}
	}
}

// With randomization every delay lies in [min·f^(n−1), 2·min·f^(n−1)) capped at max.
func TestRetryPolicyRandomizedBounds(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Factor: 2, MinBackoff: time.Second, MaxBackoff: 10 * time.Second, Randomize: true}
	for n := 1; n <= 6; n++ {
		base := RetryPolicy{Factor: 2, MinBackoff: time.Second, MaxBackoff: 10 * time.Second}.Delay(n, 0)
		for range 1000 {
			d := p.Delay(n, rand.Float64())
			if d < base || (d >= min(2*base, p.MaxBackoff) && d != p.MaxBackoff) || d > p.MaxBackoff {
				t.Fatalf("n=%d: delay %s outside [%s, %s)", n, d, base, min(2*base, p.MaxBackoff))
			}
		}
	}
}

func TestRetryDelayFuncIsOneBasedAndWholeSecond(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Factor: 2, MinBackoff: 1500 * time.Millisecond, MaxBackoff: time.Minute}
	f := p.RetryDelayFunc()
	for retried := range 4 {
		before := time.Now()
		d := f(retried, errors.New("x"), asynq.NewTask("resend:email.sent", nil))
		due := before.Add(d) // asynq computes time.Now().Add(d) a moment later: even later
		want := p.Delay(retried+1, 0)
		if due.Sub(before) < want {
			t.Errorf("retried=%d: delay %s is shorter than the formula's %s", retried, d, want)
		}
		if d > want+time.Second {
			t.Errorf("retried=%d: delay %s overshoots the formula's %s by more than a second", retried, d, want)
		}
	}
}

func TestDelayToWholeSecond(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		now  time.Time
		d    time.Duration
		want time.Duration
	}{
		{base, time.Second, time.Second},
		{base.Add(100 * time.Millisecond), time.Second, 1900 * time.Millisecond},
		{base.Add(999 * time.Millisecond), 1500 * time.Millisecond, 2001 * time.Millisecond},
		{base.Add(500 * time.Millisecond), 500 * time.Millisecond, 500 * time.Millisecond},
	} {
		got := delayToWholeSecond(tc.now, tc.d)
		if got != tc.want {
			t.Errorf("delayToWholeSecond(%s, %s) = %s, want %s", tc.now.Format(".000"), tc.d, got, tc.want)
		}
		// asynq's score is the due time's Unix seconds (rounded down): never before now+d.
		if score := time.Unix(tc.now.Add(got).Unix(), 0); score.Before(tc.now.Add(tc.d)) {
			t.Errorf("score %s is before the formula's due time %s", score, tc.now.Add(tc.d))
		}
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultRetryPolicy.Validate(); err != nil {
		t.Errorf("default policy: %v", err)
	}
	bad := RetryPolicy{MaxAttempts: 0, Factor: 0, MinBackoff: 3 * time.Second, MaxBackoff: time.Second}
	err := bad.Validate()
	for _, want := range []string{"max attempts 0", "backoff factor 0", "min backoff 3s is greater than max backoff 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestSinkOutcome(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for code, want := range map[int]string{
		200: "done", 201: "done", 204: "done", 299: "done",
		500: "retry", 501: "retry", 505: "retry", 408: "retry", 301: "retry", 307: "retry",
		429: "down", 502: "down", 503: "down", 504: "down",
		400: "dead", 401: "dead", 403: "dead", 404: "dead", 410: "dead", 413: "dead", 422: "dead",
	} {
		err := sinkOutcome(code, "", now)
		got := "retry"
		switch {
		case err == nil:
			got = "done"
		case IsPermanent(err):
			got = "dead"
		case IsUnavailable(err):
			got = "down"
		}
		if got != want {
			t.Errorf("status %d → %s, want %s", code, got, want)
		}
	}
	// Retry-After travels with 429 and 503 only.
	for code, want := range map[int]time.Duration{429: 7 * time.Second, 503: 7 * time.Second, 502: 0, 504: 0} {
		err := sinkOutcome(code, "7", now)
		if v := classify(err); v.kind != verdictDown || v.retryAfter != want || v.class != "http "+strconv.Itoa(code) {
			t.Errorf("status %d with Retry-After 7: verdict %+v, want retry after %s", code, v, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "-5": 0, "120": 2 * time.Minute, " 3 ": 3 * time.Second, "soon": 0, "1.5": 0,
		"Fri, 02 Jan 2026 03:05:05 GMT": time.Minute, // HTTP date, one minute ahead
		"Fri, 02 Jan 2026 03:00:00 GMT": 0,           // in the past
		"99999999999999999999":          0,           // does not parse as int64
		"999999999999":                  maxRetryAfter,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
func TestRouterLongestMatch(t *testing.T) {
	t.Parallel()
	var r router
	named := func(name string) Handler {
		return HandlerFunc(func(context.Context, *Event) error { return errors.New(name) })
	}
	for _, p := range []string{"*", "email.*", "email.bounced", "email.delivery.*"} {
		if err := r.handle(p, named(p)); err != nil {
			t.Fatal(err)
		}
	}
	for typ, want := range map[string]string{
		"email.bounced": "email.bounced", "email.opened": "email.*", "email.delivery.x": "email.delivery.*",
		"email.delivery_delayed": "email.*", "contact.created": "*", "emailx": "*",
	} {
		h := r.match(typ)
		if h == nil {
			t.Errorf("%s: no handler", typ)
			continue
		}
		if got := h.HandleEvent(context.Background(), nil).Error(); got != want {
			t.Errorf("%s → %s, want %s", typ, got, want)
		}
	}
	for _, bad := range []string{"", "email*", "*.bounced", "em*il.x", "email.**"} {
		if err := r.handle(bad, named(bad)); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if err := r.handle("email.*", named("dup")); err == nil {
		t.Error("duplicate prefix accepted")
	}
	if err := r.handle("email.bounced", named("dup")); err == nil {
		t.Error("duplicate exact pattern accepted")
	}
	var empty router
	if empty.match("email.sent") != nil {
		t.Error("empty router matched")
	}
}

func TestTypedPayloads(t *testing.T) {
	t.Parallel()
	ev := &Event{Type: EventEmailClicked, ID: "msg_1", Data: json.RawMessage(`{"email_id":"e1","to":["a@x"],"created_at":"2024-11-22 23:41:11.894719+00",
		"tags":[{"name":"category","value":"welcome"}],"click":{"link":"https://x","ipAddress":"1.2.3.4","timestamp":"2024-11-22T23:41:12Z"}}`)}
	var d EmailData
	if err := ev.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.EmailID != "e1" || d.Click == nil || d.Click.Link != "https://x" || d.Tags["category"] != "welcome" || d.CreatedAt.Year() != 2024 || d.Click.Timestamp.IsZero() {
		t.Errorf("decoded %+v click %+v", d, d.Click)
	}
	var tags Tags
	if err := json.Unmarshal([]byte(`{"a":"b"}`), &tags); err != nil || tags["a"] != "b" {
		t.Errorf("object tags: %v %v", tags, err)
	}
	if err := (&Event{Type: "x", Data: json.RawMessage(`[1]`)}).Decode(&d); !IsPermanent(err) {
		t.Errorf("undecodable data: %v, want a permanent error", err)
	}
	if err := (&Event{Type: "x"}).Decode(&d); !IsPermanent(err) {
		t.Errorf("missing data: %v, want a permanent error", err)
	}
	var dom DomainData
	if err := (&Event{Data: json.RawMessage(`{"id":"d1","name":"x.dev","records":[{"record":"SPF","name":"send","type":"MX","ttl":"Auto","status":"verified"}]}`)}).Decode(&dom); err != nil || len(dom.Records) != 1 || dom.Records[0].Record != "SPF" {
		t.Errorf("domain data %+v: %v", dom, err)
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	err := Permanent(base)
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, base) || !IsPermanent(err) {
		t.Errorf("Permanent(%v) = %v does not wrap both the cause and asynq.SkipRetry", base, err)
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if IsPermanent(base) {
		t.Error("plain error reported permanent")
	}
}

func TestSecretFileReloads(t *testing.T) {
	t.Parallel()
	secret1, path := writeSecret(t)
	f := &secretFile{path: path}
	now := time.Now()
	wh1, err := f.load(now)
	if err != nil {
		t.Fatal(err)
	}
	secret2, path2 := writeSecret(t)
	b, _ := os.ReadFile(path2)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The secret loaded at a given time signs the same message at the same timestamp, so two
	// signatures differ only when the secrets do.
	sign := func(loadAt time.Time) string {
		wh, err := f.load(loadAt)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := wh.Sign("id", now, []byte("{}"))
		return s
	}
	s1, _ := wh1.Sign("id", now, []byte("{}"))
	if sign(now.Add(100*time.Millisecond)) != s1 {
		t.Error("secret re-read within a second (expected the cached one)")
	}
	if sign(now.Add(2*time.Second)) == s1 {
		t.Errorf("secret not reloaded after the file changed (%s… → %s…)", secret1[:10], secret2[:10])
	}
	// A broken file keeps the last good secret.
	if err := os.WriteFile(path, []byte("not-a-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.load(now.Add(4 * time.Second)); err != nil {
		t.Errorf("broken file dropped the last good secret: %v", err)
	}
	if _, err := (&secretFile{path: path}).load(now); err == nil {
		t.Error("a non-whsec file was accepted as the first secret")
	}

}
