package resendapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendsim"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

const key = "re_unit_test_key_1234567890"

// simulator serves a Resend simulator (rate limit limit/s) that accepts key.
func simulator(t *testing.T, limit int) (*resendsim.Sim, string) {
	t.Helper()
	sim := resendsim.New(resendsim.Options{RateLimit: limit})
	sim.AddKey(key, "")
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}

func newAPI(t *testing.T, o resendapi.Options) *resendapi.API {
	t.Helper()
	a, err := resendapi.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestWebhookLifecycleAgainstTheSimulator(t *testing.T) {
	sim, _ := simulator(t, 1000)
	// The base URL may carry a path prefix (a proxy in front of the API).
	prefixed := httptest.NewServer(http.StripPrefix("/resend", sim))
	defer prefixed.Close()
	c := newAPI(t, resendapi.Options{BaseURL: prefixed.URL + "/resend", Interval: time.Millisecond}).Client(key + "\n")
	ctx := context.Background()

	w, err := c.Create(ctx, "https://hooks.example/a", []string{"email.sent"})
	if err != nil || w.ID == "" || !strings.HasPrefix(w.SigningSecret, "whsec_") || w.Status != resendapi.StatusEnabled {
		t.Fatalf("create: %+v %v", w, err)
	}
	got, err := c.Get(ctx, w.ID)
	if err != nil || got.SigningSecret != w.SigningSecret || got.Endpoint != "https://hooks.example/a" || got.Status != resendapi.StatusEnabled {
		t.Fatalf("get: %+v %v", got, err)
	}
	if err := c.Update(ctx, w.ID, resendapi.Update{Events: []string{"email.bounced", "email.sent"}, Status: new(resendapi.StatusDisabled)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get(ctx, w.ID); got.Status != resendapi.StatusDisabled || !slices.Equal(got.Events, []string{"email.bounced", "email.sent"}) || got.Endpoint != "https://hooks.example/a" {
		t.Errorf("after update: %+v", got)
	}
	secret, err := c.RotateSigningSecret(ctx, w.ID)
	if err != nil || secret == w.SigningSecret || sim.Webhooks("")[0].SigningSecret != secret {
		t.Fatalf("rotate: %q %v", secret, err)
	}
	if err := c.Remove(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	err = c.Remove(ctx, w.ID)
	if !resendapi.IsNotFound(err) {
		t.Fatalf("second remove: %v, want a 404", err)
	}
	if _, err := c.RotateSigningSecret(ctx, "../webhooks"); !resendapi.IsNotFound(err) {
		t.Errorf("an id is one path segment: %v", err)
	}
}

func TestListFollowsPages(t *testing.T) {
	_, url := simulator(t, 10000)
	c := newAPI(t, resendapi.Options{BaseURL: url, Interval: time.Microsecond}).Client(key)
	ctx := context.Background()
	for i := range 130 {
		if _, err := c.Create(ctx, fmt.Sprintf("https://hooks.example/%d", i), []string{"email.sent"}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.List(ctx)
	if err != nil || len(all) != 130 {
		t.Fatalf("list: %d webhooks, %v", len(all), err)
	}
	seen := map[string]bool{}
	for _, w := range all {
		seen[w.Endpoint] = true
	}
	if len(seen) != 130 {
		t.Errorf("list returned %d distinct endpoints", len(seen))
	}
}

func TestRejectedKeyIsUnauthorizedAndNeverInTheError(t *testing.T) {
	sim, url := simulator(t, 1000)
	sim.RevokeKey(key)
	_, err := newAPI(t, resendapi.Options{BaseURL: url}).Client(key).List(context.Background())
	if !resendapi.IsUnauthorized(err) || resendapi.StatusOf(err) != http.StatusForbidden {
		t.Fatalf("revoked key: %v", err)
	}
	_, err = newAPI(t, resendapi.Options{BaseURL: url}).Client("").List(context.Background())
	if !resendapi.IsUnauthorized(err) || resendapi.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("no key: %v", err)
	}
	// A server echoing the key back: the key is redacted from the error.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, `{"message":"bad %s\n%s"}`, r.Header.Get("Authorization"), strings.Repeat("x", 500))
	}))
	defer echo.Close()
	_, err = newAPI(t, resendapi.Options{BaseURL: echo.URL}).Client(key).List(context.Background())
	if err == nil || strings.Contains(err.Error(), key) || resendapi.StatusOf(err) != http.StatusBadGateway || strings.Contains(err.Error(), "\n") || len(err.Error()) > 300 {
		t.Fatalf("echoed key: %q", err)
	}
}

func TestNetworkErrorHasNoStatus(t *testing.T) {
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, err = newAPI(t, resendapi.Options{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port)}).Client(key).Get(context.Background(), "x")
	if err == nil || resendapi.StatusOf(err) != 0 || resendapi.IsNotFound(err) || !strings.HasSuffix(err.Error(), ": connection refused") || strings.Contains(err.Error(), "dial") {
		t.Fatalf("unreachable API: %v", err)
	}
}

// TestOneLimiterPerKey: clients of one key share its budget (≤ 2 requests/s at the simulator,
// never a 429); another key is not slowed by it.
func TestOneLimiterPerKey(t *testing.T) {
	sim, url := simulator(t, 2)
	other := "re_unit_test_other_key"
	sim.AddKey(other, "")
	api := newAPI(t, resendapi.Options{BaseURL: url, MaxWait: time.Minute})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	began := time.Now()
	for range 2 { // two webhooks using the same key, three calls each
		c := api.Client(key)
		wg.Go(func() {
			for range 3 {
				if _, err := c.List(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	otherBegan := time.Now()
	if _, err := api.Client(other).List(ctx); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Errorf("call failed: %v", err)
	}
	st := sim.Stats().Key(key)
	if st.Requests != 6 || st.RateLimited != 0 || st.MaxPerSecond > 2 {
		t.Errorf("at the simulator: %+v, want 6 requests, no 429, at most 2 in any second", st)
	}
	if elapsed < 5*resendapi.DefaultInterval {
		t.Errorf("6 calls of one key took %s, want at least 5 intervals", elapsed)
	}
	if d := time.Since(otherBegan); d > resendapi.DefaultInterval {
		t.Errorf("the other key waited %s for the first key's budget", d)
	}
}

// TestTooManyRequestsHoldsOffTheKey: after a 429 every client of the key gets a rate-limit error
// at once, without asking Resend, until retry-after has passed.
func TestTooManyRequestsHoldsOffTheKey(t *testing.T) {
	sim, url := simulator(t, 1000)
	api := newAPI(t, resendapi.Options{BaseURL: url, Interval: time.Millisecond})
	sim.Throttle(key, 1200*time.Millisecond)
	_, err := api.Client(key).List(context.Background())
	wait, limited := resendapi.RetryAfter(err)
	if !limited || wait != 2*time.Second || resendapi.StatusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("throttled call: %v (retry after %s)", err, wait)
	}
	_, err = api.Client(key).List(context.Background())
	if wait, limited := resendapi.RetryAfter(err); !limited || wait <= time.Second || wait > 2*time.Second {
		t.Fatalf("next call: %v", err)
	}
	if n := sim.Stats().Key(key).Requests; n != 1 {
		t.Errorf("the simulator saw %d requests, want 1 (the second call must not be sent)", n)
	}
}

func TestMaxWaitTurnsALongQueueIntoARetryAfter(t *testing.T) {
	_, url := simulator(t, 1000)
	api := newAPI(t, resendapi.Options{BaseURL: url, Interval: time.Second, MaxWait: 50 * time.Millisecond})
	c := api.Client(key)
	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := c.List(context.Background())
	if wait, limited := resendapi.RetryAfter(err); !limited || wait < 900*time.Millisecond {
		t.Fatalf("second call within the interval: %v", err)
	}
}

// TestQueuedCallsHoldOffToo: calls already waiting for their turn when a 429 arrives do not
// send either.
func TestQueuedCallsHoldOffToo(t *testing.T) {
	sim, url := simulator(t, 1000)
	api := newAPI(t, resendapi.Options{BaseURL: url, Interval: 300 * time.Millisecond, MaxWait: 5 * time.Second})
	if _, err := api.Client(key).List(context.Background()); err != nil {
		t.Fatal(err)
	}
	sim.Throttle(key, 5*time.Second)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 { // queued for the slots 300 ms and 600 ms from now
		wg.Go(func() { _, err := api.Client(key).List(context.Background()); errs <- err })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if _, limited := resendapi.RetryAfter(err); !limited {
			t.Errorf("queued call: %v, want a rate-limit error", err)
		}
	}
	if st := sim.Stats().Key(key); st.Requests != 2 || st.RateLimited != 1 {
		t.Errorf("at the simulator %+v: want the first call and one 429, the queued call not sent", st)
	}
}
