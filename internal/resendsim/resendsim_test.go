package resendsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/sender"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

const key = "re_test_key_0001"

// start serves a simulator with key registered; both are closed at cleanup.
func start(t *testing.T, opts Options) (*Sim, string) {
	t.Helper()
	sim := New(opts)
	sim.AddKey(key, "")
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}

// call makes one API request and decodes the JSON answer into a map.
func call(t *testing.T, method, url, apiKey string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

func TestAPIShapesAuthAndValidation(t *testing.T) {
	sim, url := start(t, Options{RateLimit: 1000})
	if code, _, out := call(t, "GET", url+"/webhooks", "", nil); code != 401 || out["name"] != "missing_api_key" {
		t.Errorf("no key: %d %v", code, out)
	}
	if code, _, out := call(t, "GET", url+"/webhooks", "re_unknown", nil); code != 403 || out["name"] != "invalid_api_key" || out["statusCode"] != float64(403) {
		t.Errorf("unknown key: %d %v", code, out)
	}
	if code, _, _ := call(t, "POST", url+"/webhooks", key, map[string]any{"endpoint": "https://x.example/h", "events": []string{"email.nope"}}); code != 422 {
		t.Errorf("unknown event type: %d, want 422", code)
	}
	if code, _, _ := call(t, "POST", url+"/webhooks", key, map[string]any{"endpoint": "https://x.example/h", "events": []string{}}); code != 422 {
		t.Errorf("no events: %d, want 422", code)
	}
	code, _, created := call(t, "POST", url+"/webhooks", key, map[string]any{"endpoint": "https://x.example/h", "events": []string{"email.sent"}})
	if code != 201 || created["object"] != "webhook" || !strings.HasPrefix(created["signing_secret"].(string), "whsec_") || len(created["id"].(string)) != 36 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	code, _, got := call(t, "GET", url+"/webhooks/"+id, key, nil)
	if code != 200 || got["status"] != "enabled" || got["endpoint"] != "https://x.example/h" || got["signing_secret"] != created["signing_secret"] {
		t.Errorf("get: %d %v", code, got)
	}
	if code, _, out := call(t, "PATCH", url+"/webhooks/"+id, key, map[string]any{"status": "disabled", "events": []string{"email.bounced", "email.sent"}}); code != 200 || out["id"] != id {
		t.Errorf("update: %d %v", code, out)
	}
	if w := sim.Webhooks("")[0]; w.Status != "disabled" || !slices.Equal(w.Events, []string{"email.bounced", "email.sent"}) {
		t.Errorf("after update: %+v", w)
	}
	code, _, rot := call(t, "POST", url+"/webhooks/"+id+"/signing-secret/rotate", key, nil)
	if code != 200 || rot["id"] != id || rot["signing_secret"] == created["signing_secret"] {
		t.Errorf("rotate: %d %v", code, rot)
	}
	if code, _, out := call(t, "DELETE", url+"/webhooks/"+id, key, nil); code != 200 || out["deleted"] != true {
		t.Errorf("delete: %d %v", code, out)
	}
	if code, _, out := call(t, "DELETE", url+"/webhooks/"+id, key, nil); code != 404 || out["name"] != "not_found" {
		t.Errorf("second delete: %d %v", code, out)
	}
	if n := sim.Stats().Unauthorized; n != 2 {
		t.Errorf("unauthorized = %d, want 2", n)
	}
}

func TestUnreachableClosesTheKeysConnections(t *testing.T) {
	sim, url := start(t, Options{RateLimit: 1000})
	sim.AddKey("re_other", "other")
	sim.Unreachable(key, true)
	req, _ := http.NewRequest("GET", url+"/webhooks", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("unreachable: got HTTP %d, want a transport error", resp.StatusCode)
	}
	if code, _, _ := call(t, "GET", url+"/webhooks", "re_other", nil); code != 200 {
		t.Errorf("another key while the first is cut off: %d, want 200", code)
	}
	sim.Unreachable(key, false)
	if code, _, _ := call(t, "GET", url+"/webhooks", key, nil); code != 200 {
		t.Errorf("reachable again: %d, want 200", code)
	}
}

func TestListPagesNewestFirst(t *testing.T) {
	_, url := start(t, Options{RateLimit: 1000})
	var ids []string
	for i := range 3 {
		_, _, out := call(t, "POST", url+"/webhooks", key, map[string]any{"endpoint": fmt.Sprintf("https://x.example/%d", i), "events": []string{"email.sent"}})
		ids = append(ids, out["id"].(string))
	}
	_, _, page := call(t, "GET", url+"/webhooks?limit=2", key, nil)
	data := page["data"].([]any)
	if page["object"] != "list" || page["has_more"] != true || len(data) != 2 || data[0].(map[string]any)["id"] != ids[2] {
		t.Fatalf("first page: %v", page)
	}
	_, _, page = call(t, "GET", url+"/webhooks?limit=2&after="+data[1].(map[string]any)["id"].(string), key, nil)
	data = page["data"].([]any)
	if page["has_more"] != false || len(data) != 1 || data[0].(map[string]any)["id"] != ids[0] {
		t.Fatalf("second page: %v", page)
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	sim, url := start(t, Options{})
	other := "re_test_key_0002"
	sim.AddKey(other, "")
	var codes []int
	for range 3 {
		code, _, _ := call(t, "GET", url+"/webhooks", key, nil)
		codes = append(codes, code)
	}
	if !slices.Equal(codes, []int{200, 200, 429}) {
		t.Errorf("three quick requests: %v, want 200 200 429", codes)
	}
	if code, _, _ := call(t, "GET", url+"/webhooks", other, nil); code != 200 {
		t.Errorf("another key has its own budget: %d", code)
	}
	st := sim.Stats().Key(key)
	if st.Requests != 3 || st.RateLimited != 1 || st.MaxPerSecond != 3 || st.Calls["GET /webhooks"] != 3 {
		t.Errorf("stats %+v", st)
	}
	sim.Throttle(other, 1500*time.Millisecond)
	code, h, out := call(t, "GET", url+"/webhooks", other, nil)
	if code != 429 || h.Get("retry-after") != "2" || out["name"] != "rate_limit_exceeded" || h.Get("ratelimit-limit") != "2" {
		t.Errorf("throttled: %d retry-after %q %v", code, h.Get("retry-after"), out)
	}
}

// endpoint is a webhook receiver for delivery tests: it verifies signatures and answers with
// the next code of a script (then 200).
type endpoint struct {
	mu      sync.Mutex
	script  []int
	got     []*http.Request
	bodies  [][]byte
	secrets []string // the request must verify with each
	bad     int
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.secrets {
		wh, _ := svix.NewWebhook(s)
		if wh.Verify(body, r.Header) != nil {
			e.bad++
		}
	}
	e.got = append(e.got, r)
	e.bodies = append(e.bodies, body)
	code := 200
	if len(e.script) > 0 {
		code, e.script = e.script[0], e.script[1:]
	}
	w.WriteHeader(code)
}

func (e *endpoint) requests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func register(t *testing.T, url, endpointURL string, events ...string) map[string]any {
	t.Helper()
	code, _, out := call(t, "POST", url+"/webhooks", key, map[string]any{"endpoint": endpointURL, "events": events})
	if code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	return out
}

func TestDeliveryRetriesOnResendScheduleUntil2xx(t *testing.T) {
	// 1e-4: 5 s → 0.5 ms, 5 min → 30 ms, 30 min → 180 ms.
	sim, url := start(t, Options{TimeScale: 1e-4, RateLimit: 1000})
	ep := &endpoint{script: []int{500, 503, 200}}
	target := httptest.NewServer(ep)
	defer target.Close()
	created := register(t, url, target.URL+"/hook", "email.bounced")
	ep.secrets = []string{created["signing_secret"].(string)}

	other := &endpoint{}
	otherSrv := httptest.NewServer(other)
	defer otherSrv.Close()
	register(t, url, otherSrv.URL, "email.sent") // not subscribed to email.bounced

	body := sender.SampleEvent("email.bounced", 1, time.Now())
	began := time.Now()
	id, n, err := sim.Send("", body)
	if err != nil || n != 1 {
		t.Fatalf("send: %v, %d webhooks", err, n)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "delivered", func() bool { return sim.Stats().Delivered == 1 })
	elapsed := time.Since(began)
	reqs := ep.requests()
	if len(reqs) != 3 {
		t.Fatalf("attempts = %d, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.Header.Get("svix-id") != id || r.URL.Path != "/hook" || !bytes.Equal(ep.bodies[i], body) {
			t.Errorf("attempt %d: svix-id %q path %q", i, r.Header.Get("svix-id"), r.URL.Path)
		}
	}
	if ep.bad != 0 {
		t.Errorf("%d attempts did not verify with the webhook's secret", ep.bad)
	}
	// The second retry waits 5 min scaled = 30 ms.
	if elapsed < 30*time.Millisecond {
		t.Errorf("delivered after %s: the retry schedule was not applied", elapsed)
	}
	st := sim.Stats()
	if st.Attempts != 3 || st.EndpointStatus[500] != 1 || st.EndpointStatus[503] != 1 || st.EndpointStatus[200] != 1 || len(other.requests()) != 0 {
		t.Errorf("stats %+v, unsubscribed webhook got %d", st, len(other.requests()))
	}
}

func TestRotationSignsWithBothSecretsDuringTheWindow(t *testing.T) {
	// The 24 h window scaled by 1e-5 is 864 ms.
	sim, url := start(t, Options{TimeScale: 1e-5, RateLimit: 1000})
	ep := &endpoint{}
	target := httptest.NewServer(ep)
	defer target.Close()
	created := register(t, url, target.URL, "email.sent")
	old := created["signing_secret"].(string)
	_, _, rot := call(t, "POST", url+"/webhooks/"+created["id"].(string)+"/signing-secret/rotate", key, nil)
	ep.secrets = []string{old, rot["signing_secret"].(string)} // each must verify on its own

	if _, _, err := sim.Send("", sender.SampleEvent("email.sent", 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "delivered", func() bool { return sim.Stats().Delivered == 1 })
	if sig := ep.requests()[0].Header.Get("svix-signature"); strings.Count(sig, "v1,") != 2 || ep.bad != 0 {
		t.Fatalf("during the window: signature %q, %d failed verifications", sig, ep.bad)
	}
	w := sim.Webhooks("")[0]
	testutil.EventuallyTrue(t, 5*time.Second, "window over", func() bool { return time.Now().After(w.PreviousUntil) })
	ep.secrets = []string{rot["signing_secret"].(string)}
	if _, _, err := sim.Send("", sender.SampleEvent("email.sent", 2, time.Now())); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "delivered", func() bool { return sim.Stats().Delivered == 2 })
	if sig := ep.requests()[1].Header.Get("svix-signature"); strings.Count(sig, "v1,") != 1 || ep.bad != 0 {
		t.Errorf("after the window: signature %q", sig)
	}
	if st := sim.Stats(); st.Signatures[2] != 1 || st.Signatures[1] != 1 {
		t.Errorf("signature counts %v", st.Signatures)
	}
}

func TestFailingEndpointIsDisabledAndGetsNoMoreEvents(t *testing.T) {
	// DisableAfter 1 h at 1e-4 = 360 ms: reached at the 5th attempt (30 min + 2 h scaled).
	sim, url := start(t, Options{TimeScale: 1e-4, DisableAfter: time.Hour})
	ep := &endpoint{script: slices.Repeat([]int{500}, 100)}
	target := httptest.NewServer(ep)
	defer target.Close()
	register(t, url, target.URL, "email.sent")
	if _, _, err := sim.Send("", sender.SampleEvent("email.sent", 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "disabled", func() bool { return sim.Webhooks("")[0].Status == "disabled" })
	testutil.EventuallyTrue(t, 5*time.Second, "chain ended", func() bool { return sim.Stats().Dropped == 1 })
	if st := sim.Stats(); st.Disabled != 1 || st.Attempts < 4 || st.Attempts > 8 {
		t.Errorf("stats %+v", st)
	}
	if _, n, _ := sim.Send("", sender.SampleEvent("email.sent", 2, time.Now())); n != 0 {
		t.Errorf("a disabled endpoint was sent %d new events", n)
	}
}

func TestAttemptsTimeOutAndEveryAttemptIsCounted(t *testing.T) {
	sim, url := start(t, Options{TimeScale: 1e-4, AttemptTimeout: 100 * time.Millisecond})
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // answer only after the simulator gave up (or the test ends)
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer func() { close(release); slow.Close() }()
	register(t, url, slow.URL, "email.sent")
	if _, _, err := sim.Send("", sender.SampleEvent("email.sent", 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "two timed-out attempts", func() bool { return sim.Stats().EndpointStatus[0] >= 2 })
}

func TestSimEventsEndpointSendsSamples(t *testing.T) {
	sim, url := start(t, Options{})
	ep := &endpoint{}
	target := httptest.NewServer(ep)
	defer target.Close()
	register(t, url, target.URL, "email.delivered", "email.bounced")
	resp, err := http.Post(url+"/_sim/events?type=email.delivered,email.bounced,email.sent&count=6", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Sent []struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Webhooks int    `json:"webhooks"`
		} `json:"sent"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	_ = resp.Body.Close()
	if resp.StatusCode != 202 || len(out.Sent) != 6 || out.Sent[2].Type != "email.sent" || out.Sent[2].Webhooks != 0 || out.Sent[0].Webhooks != 1 {
		t.Fatalf("%d %+v", resp.StatusCode, out)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "4 delivered", func() bool { return sim.Stats().Delivered == 4 })
	if err := sim.Replay(out.Sent[0].ID); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "replayed", func() bool { return sim.Stats().Delivered == 5 })
	if got := ep.requests()[4].Header.Get("svix-id"); got != out.Sent[0].ID {
		t.Errorf("replay svix-id %q, want %q", got, out.Sent[0].ID)
	}
	resp, err = http.Get(url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if strings.Contains(string(b), key) || !strings.Contains(string(b), KeyLabel(key)) {
		t.Errorf("stats must name keys by label only: %s", b)
	}
}

func TestStreamSendsUntilStopped(t *testing.T) {
	sim, url := start(t, Options{RateLimit: 1000})
	ep := &endpoint{}
	target := httptest.NewServer(ep)
	defer target.Close()
	register(t, url, target.URL, "email.sent")
	st := sim.Stream("", "email.sent", 5*time.Millisecond)
	testutil.EventuallyTrue(t, 5*time.Second, "five sent", func() bool { return st.Sent() >= 5 })
	sent := st.Stop()
	if st.Stop() != sent {
		t.Error("a second Stop changed the count")
	}
	testutil.EventuallyTrue(t, 5*time.Second, "all delivered", func() bool { return int64(sim.Stats().Delivered) == sent })
	if got := int64(len(ep.requests())); got != sent {
		t.Errorf("endpoint got %d, stream sent %d", got, sent)
	}
}
