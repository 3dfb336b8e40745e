package resendsim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/sender"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// --- webhooks (what tests and the sandbox read) ---

// Webhook is the simulator's view of one webhook.
type Webhook struct {
	Team, ID, Endpoint, Status string
	Events                     []string
	SigningSecret              string
	// PreviousSecret still signs until PreviousUntil (after a rotation).
	PreviousSecret string
	PreviousUntil  time.Time
}

// Webhooks lists the webhooks of team ("" = DefaultTeam), newest first.
func (s *Sim) Webhooks(teamName string) []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	teamName = cmp.Or(teamName, DefaultTeam)
	t := s.teams[teamName]
	if t == nil {
		return nil
	}
	out := make([]Webhook, 0, len(t.webhooks))
	for _, wh := range t.webhooks {
		out = append(out, Webhook{
			Team: teamName, ID: wh.id, Endpoint: wh.endpoint, Status: wh.status, Events: slices.Clone(wh.events),
			SigningSecret: wh.secret, PreviousSecret: wh.previous, PreviousUntil: wh.previousUntil,
		})
	}
	return out
}

// SetStatus sets a webhook's state directly (as a user could in Resend's dashboard).
func (s *Sim) SetStatus(teamName, id, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teams[cmp.Or(teamName, DefaultTeam)]
	if t == nil || t.find(id) == nil {
		return fmt.Errorf("no webhook %s", id)
	}
	t.find(id).status = status
	return nil
}

// --- delivery ---

// Send makes "Resend" send one event of team ("" = DefaultTeam): body is the event JSON, whose
// "type" picks the subscribed webhooks. It returns the svix-id and how many webhooks it goes to.
func (s *Sim) Send(teamName string, body []byte) (string, int, error) {
	var ev struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" {
		return "", 0, errors.New("the event must be a JSON object with a \"type\"")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	teamName = cmp.Or(teamName, DefaultTeam)
	t := s.teams[teamName]
	if t == nil {
		return "", 0, fmt.Errorf("no team %q: add a key for it first", teamName)
	}
	m := &message{id: signing.NewMessageID(), team: teamName, typ: ev.Type, body: slices.Clone(body)}
	for _, wh := range t.webhooks {
		if wh.status == "enabled" && slices.Contains(wh.events, ev.Type) {
			m.webhooks = append(m.webhooks, wh.id)
		}
	}
	s.messages[m.id] = m
	s.startDeliveries(m, m.webhooks)
	return m.id, len(m.webhooks), nil
}

// Replay sends a message again to the webhooks it went to (Resend's "replay"): the same svix-id,
// freshly signed, so receivers see a duplicate.
func (s *Sim) Replay(msgID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messages[msgID]
	if m == nil {
		return fmt.Errorf("no message %s", msgID)
	}
	s.startDeliveries(m, m.webhooks)
	return nil
}

// startDeliveries runs one attempt chain per webhook. Caller holds s.mu.
func (s *Sim) startDeliveries(m *message, webhooks []string) {
	if s.ctx.Err() != nil {
		return
	}
	for _, id := range webhooks {
		s.wg.Go(func() { s.deliver(m, id) })
	}
}

// deliver tries m at webhook id on Resend's schedule until an attempt gets a 2xx, the attempts
// run out, or the webhook is disabled or deleted.
func (s *Sim) deliver(m *message, id string) {
	for attempt := 0; ; attempt++ {
		endpoint, secrets, ok := s.target(m.team, id)
		if !ok {
			s.count(func(c *counters) { c.dropped++ })
			return
		}
		code := s.attempt(m, endpoint, secrets)
		if s.ctx.Err() != nil {
			return
		}
		if s.settle(m.team, id, code, attempt) {
			return
		}
		t := time.NewTimer(s.scaled(Schedule[attempt]))
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// target is where and with which secrets to deliver now; false when the webhook is gone or
// disabled.
func (s *Sim) target(teamName, id string) (string, []string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teams[teamName]
	wh := t.find(id)
	if wh == nil || wh.status != "enabled" {
		return "", nil, false
	}
	secrets := []string{wh.secret}
	if wh.previous != "" && time.Now().Before(wh.previousUntil) {
		secrets = append(secrets, wh.previous)
	}
	return wh.endpoint, secrets, true
}

// attempt POSTs the event once, signed with every secret, and returns the status (0: no answer).
func (s *Sim) attempt(m *message, endpoint string, secrets []string) int {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return 0
	}
	defer func() { <-s.sem }()
	h, err := signing.Headers(secrets, m.id, time.Now(), m.body)
	if err != nil {
		s.opts.Log.Error("cannot sign", "id", m.id, "error", err)
		return 0
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, endpoint, bytes.NewReader(m.body))
	if err != nil {
		return 0
	}
	req.Header = h
	req.Header.Set("User-Agent", "Svix-Webhooks/1.0 (resend-webhook-operator simulator)")
	code := 0
	resp, err := s.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		code = resp.StatusCode
	}
	s.count(func(c *counters) {
		c.attempts++
		c.endpointStatus[code]++
		c.signatures[len(secrets)]++
	})
	return code
}

// settle records an attempt's outcome; true when the chain ends.
func (s *Sim) settle(teamName, id string, code, attempt int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	wh := s.teams[teamName].find(id)
	if code >= 200 && code < 300 {
		s.stats.delivered++
		if wh != nil {
			wh.failingSince = time.Time{}
		}
		return true
	}
	if wh != nil {
		now := time.Now()
		if wh.failingSince.IsZero() {
			wh.failingSince = now
		}
		if wh.status == "enabled" && now.Sub(wh.failingSince) >= s.scaled(s.opts.DisableAfter) {
			wh.status = "disabled"
			s.stats.disabled++
			s.opts.Log.Warn("endpoint disabled after repeated failures", "id", wh.id, "endpoint", redactURL(wh.endpoint))
		}
	}
	if attempt >= len(Schedule) || wh == nil || wh.status != "enabled" {
		s.stats.dropped++
		return true
	}
	return false
}

func (s *Sim) count(f func(*counters)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// Stream is a steady flow of events (Sim.Stream).
type Stream struct {
	sent atomic.Int64
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Stream makes "Resend" send a sample event of eventType to team's webhooks every interval,
// until Stop (or Close): traffic that keeps flowing while a test changes something.
func (s *Sim) Stream(teamName, eventType string, every time.Duration) *Stream {
	st := &Stream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-st.stop:
				return
			case <-s.ctx.Done():
				return
			case <-tick.C:
			}
			if _, n, err := s.Send(teamName, sender.SampleEvent(eventType, i, time.Now())); err == nil && n > 0 {
				st.sent.Add(int64(n))
			}
		}
	}()
	return st
}

// Sent is the number of (event, webhook) deliveries started so far.
func (st *Stream) Sent() int64 { return st.sent.Load() }

// Stop ends the stream and returns Sent.
func (st *Stream) Stop() int64 {
	st.once.Do(func() { close(st.stop) })
	<-st.done
	return st.sent.Load()
}
