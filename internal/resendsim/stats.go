package resendsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/sender"
)

// --- test and sandbox endpoints ---

// postEvents: POST /_sim/events[?team=T][&type=a,b][&count=N] sends N sample events (default
// one of each type, or of each listed type); with a JSON body, that event (count copies).
func (s *Sim) postEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	count := 0
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			http.Error(w, "count must be 1…10000", http.StatusBadRequest)
			return
		}
		count = n
	}
	types := resendapi.EventTypes
	if v := q.Get("type"); v != "" {
		types = strings.Split(v, ",")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if count == 0 {
		count = len(types)
		if len(bytes.TrimSpace(body)) > 0 {
			count = 1
		}
	}
	type sent struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Webhooks int    `json:"webhooks"`
	}
	var out []sent
	for i := range count {
		ev := body
		if len(bytes.TrimSpace(ev)) == 0 {
			ev = sender.SampleEvent(types[i%len(types)], i, time.Now())
		}
		id, n, err := s.Send(q.Get("team"), ev)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var typ struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(ev, &typ)
		out = append(out, sent{ID: id, Type: typ.Type, Webhooks: n})
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"sent": out})
}

func (s *Sim) getStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// KeyStats are the API requests of one key.
type KeyStats struct {
	Requests int `json:"requests"`
	// MaxPerSecond is the most requests the key made in any one-second window.
	MaxPerSecond int `json:"maxPerSecond"`
	// RateLimited counts requests answered 429.
	RateLimited int `json:"rateLimited"`
	// Calls counts requests by route, e.g. "GET /webhooks/{id}".
	Calls map[string]int `json:"calls"`
}

// Stats are the simulator's counters.
type Stats struct {
	// Keys by KeyLabel: API keys never appear in the stats.
	Keys map[string]KeyStats `json:"keys"`
	// Unauthorized counts API requests answered 401 or 403.
	Unauthorized int `json:"unauthorized"`
	// Attempts counts delivery attempts; EndpointStatus counts them by the endpoint's answer
	// (0 = no answer, e.g. a timeout) — EndpointStatus[401] are signature rejections.
	Attempts       int         `json:"attempts"`
	EndpointStatus map[int]int `json:"endpointStatus"`
	// Signatures counts attempts by the number of v1 signatures they carried (2 during a
	// rotation's dual-signing window).
	Signatures map[int]int `json:"signatures"`
	// Delivered counts (event, webhook) pairs acknowledged with a 2xx; Dropped those given up
	// (attempts exhausted, webhook disabled or deleted).
	Delivered int `json:"delivered"`
	Dropped   int `json:"dropped"`
	// Disabled counts endpoints disabled after repeated failures.
	Disabled int `json:"disabled"`
}

// KeyLabel names apiKey in Stats without revealing it.
func KeyLabel(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return "key-" + hex.EncodeToString(sum[:4])
}

// Key is the stats of apiKey (zero when it made no request).
func (st Stats) Key(apiKey string) KeyStats { return st.Keys[KeyLabel(apiKey)] }

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Keys: map[string]KeyStats{}, Unauthorized: s.stats.unauthorized, Attempts: s.stats.attempts,
		EndpointStatus: maps.Clone(s.stats.endpointStatus), Signatures: maps.Clone(s.stats.signatures),
		Delivered: s.stats.delivered, Dropped: s.stats.dropped, Disabled: s.stats.disabled,
	}
	for key, k := range s.keys {
		ks := k.stats
		ks.Calls = maps.Clone(ks.Calls)
		st.Keys[KeyLabel(key)] = ks
	}
	return st
}
