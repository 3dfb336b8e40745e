package sender

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// receiver verifies like the real receiver does and records what it accepted.
type receiver struct {
	wh    *svix.Webhook
	mu    sync.Mutex
	types map[string]string // svix-id → event type
	hosts map[string]bool
}

func newReceiver(t *testing.T, secret string) (*receiver, string) {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{wh: wh, types: map[string]string{}, hosts: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := rc.wh.Verify(body, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string `json:"type"`
			Data map[string]any
		}
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" || len(ev.Data) == 0 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.types[r.Header.Get("svix-id")] = ev.Type
		rc.hosts[r.Host] = true
		rc.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

func TestSendEveryTypeDuplicatesForged(t *testing.T) {
	secret := signing.NewSecret()
	rc, url := newReceiver(t, secret)
	s, err := Send(context.Background(), Options{URL: url + "/hook", Host: "hooks.example.com", Secret: secret, Duplicates: 5, Forged: 3, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[Kind]map[int]int{KindDistinct: {200: len(resendapi.EventTypes)}, KindDuplicate: {200: 5}, KindForged: {401: 3}} {
		if got := s.Codes(kind); !maps.Equal(got, want) {
			t.Errorf("%s: codes %v, want %v", kind, got, want)
		}
	}
	ids := s.DistinctIDs()
	if len(rc.types) != len(resendapi.EventTypes) || len(ids) != len(resendapi.EventTypes) {
		t.Fatalf("receiver accepted %d ids, sender planned %d distinct; want %d", len(rc.types), len(ids), len(resendapi.EventTypes))
	}
	if got := slices.Sorted(maps.Values(rc.types)); !slices.Equal(got, slices.Sorted(slices.Values(resendapi.EventTypes))) {
		t.Errorf("types sent %v, want each Resend type once", got)
	}
	for _, r := range s.Results {
		if r.Kind == KindDuplicate && !slices.Contains(ids, r.ID) {
			t.Errorf("duplicate %s is not a re-delivery of a sent id", r.ID)
		}
	}
	if !rc.hosts["hooks.example.com"] || len(rc.hosts) != 1 {
		t.Errorf("Host header override: saw %v", rc.hosts)
	}
}

func TestSendRate(t *testing.T) {
	secret := signing.NewSecret()
	_, url := newReceiver(t, secret)
	s, err := Send(context.Background(), Options{URL: url, Secret: secret, Count: 11, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	// 11 requests at 50/s: the limiter spaces them over at least 10 intervals of 20 ms.
	if s.Elapsed < 180*time.Millisecond {
		t.Errorf("11 requests at --rate=50 took %s, want ≥ 200 ms", s.Elapsed)
	}
}
