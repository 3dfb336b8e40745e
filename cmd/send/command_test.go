package send

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// verifyingReceiver checks signatures as the receiver does and returns the event types it
// accepted so far.
func verifyingReceiver(t *testing.T, secret string) (func() []string, string) {
	wh, err := signing.Parse([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted := map[string]string{} // svix-id → event type
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct{ Type string }
		if err := wh.Verify(body, r.Header); err != nil || json.Unmarshal(body, &ev) != nil {
			http.Error(w, "rejected", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		accepted[r.Header.Get("svix-id")] = ev.Type
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Collect(maps.Values(accepted))
	}, srv.URL
}

func TestCommand(t *testing.T) {
	secret := signing.NewSecret()
	types, url := verifyingReceiver(t, secret)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	eventFile := filepath.Join(dir, "event.json")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eventFile, []byte(`{"type":"email.bounced","created_at":"2026-01-01T00:00:00Z","data":{"email_id":"x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"--url=" + url, "--secret-file=" + secretFile, "--file=" + eventFile, "--count=3"}, func(string) string { return "" }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "distinct  200×3") {
		t.Errorf("summary:\n%s", out.String())
	}
	if n := len(types()); n != 3 {
		t.Errorf("the receiver accepted %d events, want 3", n)
	}
	for _, typ := range types() {
		if typ != "email.bounced" {
			t.Errorf("--file sent type %q", typ)
		}
	}

	out.Reset()
	err = run(context.Background(), []string{"--url=" + url, "--wrong-secret", "--type=email.sent", "--count=2"}, func(string) string { return "" }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "distinct  401×2") {
		t.Errorf("--wrong-secret summary:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"--url=" + url}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("no secret must be an error")
	}
}
