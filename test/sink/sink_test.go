package sink

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

func deliver(t *testing.T, url, secret, id string) int {
	t.Helper()
	body := []byte(`{"type":"email.sent","data":{}}`)
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sig, _ := wh.Sign(id, now, body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestSink(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var logs bytes.Buffer
	s, err := New(slog.New(slog.NewJSONHandler(&logs, nil)), secret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)

	if code := deliver(t, srv.URL, secret, "msg_1"); code != 200 {
		t.Fatalf("valid delivery: %d", code)
	}
	if code := deliver(t, srv.URL, "whsec_dGhpcyBpcyBub3QgdGhlIHJpZ2h0IHNlY3JldA==", "msg_forged"); code != 401 {
		t.Errorf("wrongly signed delivery: %d, want 401", code)
	}
	s.SetStatus(http.StatusInternalServerError)
	for range 3 {
		if code := deliver(t, srv.URL, secret, "msg_2"); code != 500 {
			t.Errorf("with SetStatus(500): %d", code)
		}
	}
	if got := s.Received(); len(got) != 1 || got["msg_1"] != 1 {
		t.Errorf("Received = %v, want only msg_1 once", got)
	}
	if got := s.Attempts(); got["msg_2"] != 3 || got["msg_1"] != 1 {
		t.Errorf("Attempts = %v", got)
	}
	if s.Invalid() != 1 {
		t.Errorf("Invalid = %d, want 1", s.Invalid())
	}
	if !bytes.Contains(logs.Bytes(), []byte(`"signature":"ok"`)) {
		t.Errorf("a delivery log line says whether the signature verified:\n%s", logs.String())
	}
}
