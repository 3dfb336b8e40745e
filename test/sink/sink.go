// Package sink is the sandbox's echo sink: an HTTP endpoint the built-in worker delivers events
// to. It verifies each delivery's Standard Webhooks / Svix signature (webhook-id,
// webhook-timestamp, webhook-signature), logs one line per event, remembers how often each id
// arrived, and answers with a status code that tests can change (e.g. 500 to force retries).
package sink

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/admin"
)

// Sink receives delivered events. The zero value is not usable; call New.
type Sink struct {
	log    *slog.Logger
	verify *svix.Webhook // nil = signatures are not checked
	status atomic.Int32  // answer to valid deliveries

	mu         sync.Mutex
	deliveries map[string]int // webhook-id → deliveries answered with status
	attempts   map[string]int // webhook-id → every delivery, whatever the answer
	invalid    int
}

// New returns a sink that answers 200. secret, when not empty, is the whsec_ secret the worker
// signs with (spec.worker.sink.signingSecretRef); deliveries without a valid signature get 401.
func New(log *slog.Logger, secret string) (*Sink, error) {
	s := &Sink{log: log, deliveries: map[string]int{}, attempts: map[string]int{}}
	s.status.Store(http.StatusOK)
	if secret != "" {
		wh, err := svix.NewWebhook(secret)
		if err != nil {
			return nil, err
		}
		s.verify = wh
	}
	return s, nil
}

// SetStatus makes the sink answer valid deliveries with code (e.g. 500 to make the worker retry).
func (s *Sink) SetStatus(code int) { s.status.Store(int32(code)) }

// Received returns, per event id, how many deliveries were acknowledged with a 2xx.
func (s *Sink) Received() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for id, n := range s.deliveries {
		if n > 0 {
			m[id] = n
		}
	}
	return m
}

// Attempts returns, per event id, how many deliveries arrived whatever the sink answered.
func (s *Sink) Attempts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.attempts)
}

// Invalid is how many deliveries failed signature verification.
func (s *Sink) Invalid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.invalid
}

// ServeHTTP handles one delivery.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	var ev struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &ev)
	verified := "not checked (no sink secret)"
	if s.verify != nil {
		if err := s.verify.Verify(body, r.Header); err != nil {
			s.mu.Lock()
			s.invalid++
			s.mu.Unlock()
			s.log.Warn("delivery rejected: bad signature", "id", id, "type", ev.Type, "error", err.Error())
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		verified = "ok"
	}
	code := int(s.status.Load())
	s.mu.Lock()
	s.attempts[id]++
	attempt := s.attempts[id]
	if code >= 200 && code < 300 {
		s.deliveries[id]++
	}
	s.mu.Unlock()
	s.log.Info("event delivered", "id", id, "type", ev.Type, "bytes", len(body), "attempt", attempt, "signature", verified, "answer", code)
	w.WriteHeader(code)
}

// Serve runs the sink on addr until ctx is done. onListen receives the bound address.
func (s *Sink) Serve(ctx context.Context, addr string, onListen func(net.Addr)) error {
	return admin.Serve(ctx, s.log, "sink", addr, admin.NewServer(s), 5*time.Second, onListen)
}
