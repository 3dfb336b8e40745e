// Package resendsim is a Resend simulator for tests and the sandbox: Resend's webhook management
// endpoints with Resend's shapes, Bearer API keys, the per-key rate limit answered with 429 and
// retry-after, signing-secret rotation with dual signing, and delivery like Resend's (through
// Svix): an event is signed and POSTed to every enabled webhook subscribed to its type, retried
// on a non-2xx answer or a timeout on Resend's schedule, and an endpoint that keeps failing is
// disabled. A time scale compresses the schedule. Counters let tests see what happened.
//
// Besides the API it serves POST /_sim/events (make "Resend" send events) and GET /_sim/stats.
package resendsim

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// Schedule is Resend's delivery retry schedule: the waits before the 2nd, 3rd, … 8th attempt.
var Schedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Defaults of Options (in Resend's time, before TimeScale).
const (
	DefaultRateLimit         = 2
	DefaultDualSigningWindow = 24 * time.Hour
	// DefaultDisableAfter: Svix disables an endpoint whose deliveries all failed for 5 days.
	DefaultDisableAfter   = 5 * 24 * time.Hour
	DefaultAttemptTimeout = 15 * time.Second
	DefaultMaxInFlight    = 32
	// DefaultTeam is the account of keys added without one.
	DefaultTeam = "default"
)

// Options configure a simulator.
type Options struct {
	// TimeScale multiplies the retry schedule, DualSigningWindow and DisableAfter: 0.001 turns
	// Resend's 5 s, 5 min, 30 min … into 5 ms, 300 ms, 1.8 s …; default 1.
	TimeScale float64
	// RateLimit is the number of API requests one key may make in any one second; default 2.
	RateLimit int
	// DualSigningWindow is how long after a rotation deliveries carry both signatures.
	DualSigningWindow time.Duration
	// DisableAfter disables an endpoint whose deliveries have failed, without a success in
	// between, for this long.
	DisableAfter time.Duration
	// AttemptTimeout bounds one delivery attempt (not scaled); default 15 s.
	AttemptTimeout time.Duration
	// MaxInFlight bounds concurrent delivery attempts; default 32.
	MaxInFlight int
	// Resolve, when set, maps an endpoint's host:port to the address to dial instead ("" =
	// dial as is), the way DNS would point a public hostname at the Ingress.
	Resolve func(hostport string) string
	// Log; default discards.
	Log *slog.Logger
}

// Sim is a simulated Resend. Use New; serve it with an http.Server or httptest.
type Sim struct {
	opts   Options
	mux    *http.ServeMux
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}

	mu       sync.Mutex
	keys     map[string]*keyAccount // API key → its account and counters
	teams    map[string]*team
	messages map[string]*message // svix-id → message (for Replay)
	stats    counters
}

type keyAccount struct {
	team      string
	revoked   bool
	down      bool        // Unreachable: connections closed without an answer
	window    []time.Time // requests of the last second
	throttled time.Time   // Throttle: 429 until then
	stats     KeyStats
}

type team struct {
	webhooks []*webhook // newest first, as Resend lists them
}

type webhook struct {
	id, endpoint, createdAt string
	events                  []string
	status                  string
	secret, previous        string
	previousUntil           time.Time
	failingSince            time.Time // first failed attempt since the last success; zero = healthy
}

type message struct {
	id, team, typ string
	body          []byte
	webhooks      []string // the webhooks it was sent to
}

type counters struct {
	unauthorized   int
	attempts       int
	delivered      int
	dropped        int
	disabled       int
	endpointStatus map[int]int
	signatures     map[int]int
}

// New returns a simulator; Close stops its deliveries.
func New(opts Options) *Sim {
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	opts.RateLimit = cmp.Or(opts.RateLimit, DefaultRateLimit)
	opts.DualSigningWindow = cmp.Or(opts.DualSigningWindow, DefaultDualSigningWindow)
	opts.DisableAfter = cmp.Or(opts.DisableAfter, DefaultDisableAfter)
	opts.AttemptTimeout = cmp.Or(opts.AttemptTimeout, DefaultAttemptTimeout)
	opts.MaxInFlight = cmp.Or(opts.MaxInFlight, DefaultMaxInFlight)
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		opts: opts, ctx: ctx, cancel: cancel, sem: make(chan struct{}, opts.MaxInFlight),
		keys: map[string]*keyAccount{}, teams: map[string]*team{}, messages: map[string]*message{},
		stats: counters{endpointStatus: map[int]int{}, signatures: map[int]int{}},
	}
	s.client = &http.Client{Timeout: opts.AttemptTimeout, Transport: s.transport()}
	s.mux = http.NewServeMux()
	s.api("POST /webhooks", s.create)
	s.api("GET /webhooks", s.list)
	s.api("GET /webhooks/{id}", s.get)
	s.api("PATCH /webhooks/{id}", s.update)
	s.api("DELETE /webhooks/{id}", s.remove)
	s.api("POST /webhooks/{id}/signing-secret/rotate", s.rotate)
	s.mux.HandleFunc("POST /_sim/events", s.postEvents)
	s.mux.HandleFunc("GET /_sim/stats", s.getStats)
	return s
}

// transport dials through Resolve, so an endpoint's hostname can point at a local Ingress.
func (s *Sim) transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = s.opts.MaxInFlight
	if s.opts.Resolve != nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to := s.opts.Resolve(addr); to != "" {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	return t
}

func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops deliveries (pending retries are abandoned) and waits for running attempts.
func (s *Sim) Close() {
	s.mu.Lock() // deliveries start under mu: none starts after this
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

// AddKey accepts apiKey, for the account team ("" = DefaultTeam). Keys of one team see the same
// webhooks, as Resend's API keys of one team do; each key has its own rate limit.
func (s *Sim) AddKey(apiKey, teamName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	teamName = cmp.Or(teamName, DefaultTeam)
	s.keys[apiKey] = &keyAccount{team: teamName}
	if s.teams[teamName] == nil {
		s.teams[teamName] = &team{}
	}
}

// RevokeKey makes apiKey invalid (403), like deleting it in Resend's dashboard.
func (s *Sim) RevokeKey(apiKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[apiKey]; k != nil {
		k.revoked = true
	}
}

// Unreachable makes the API look down to apiKey's requests while on: each connection is closed
// without an answer, as when Resend cannot be reached.
func (s *Sim) Unreachable(apiKey string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[apiKey]; k != nil {
		k.down = on
	}
}

// Throttle answers every request of apiKey with 429 for d (real time), as if its budget were
// used up; retry-after says when it ends.
func (s *Sim) Throttle(apiKey string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[apiKey]; k != nil {
		k.throttled = time.Now().Add(d)
	}
}

func (s *Sim) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.opts.TimeScale)
}

// --- API ---

// apiError is Resend's error body.
type apiError struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
	Name       string `json:"name"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, name, msg string) {
	writeJSON(w, code, apiError{StatusCode: code, Message: msg, Name: name})
}

// api registers an authenticated, rate-limited API route. The handler runs under s.mu.
func (s *Sim) api(pattern string, h func(w http.ResponseWriter, r *http.Request, t *team)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		defer s.mu.Unlock()
		k := s.keys[key]
		switch {
		case k != nil && k.down:
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
				return
			}
			panic(http.ErrAbortHandler) // no hijacking (HTTP/2): abort the stream unanswered
		case !ok || key == "":
			s.stats.unauthorized++
			writeError(w, http.StatusUnauthorized, "missing_api_key", "Missing API key in the authorization header")
			return
		case k == nil || k.revoked:
			s.stats.unauthorized++
			writeError(w, http.StatusForbidden, "invalid_api_key", "API key is invalid")
			return
		}
		now := time.Now()
		k.stats.Requests++
		k.stats.Calls = countCall(k.stats.Calls, pattern)
		k.window = slices.DeleteFunc(k.window, func(t time.Time) bool { return now.Sub(t) >= time.Second })
		k.window = append(k.window, now)
		k.stats.MaxPerSecond = max(k.stats.MaxPerSecond, len(k.window))
		if wait := k.throttled.Sub(now); wait > 0 || len(k.window) > s.opts.RateLimit {
			if wait <= 0 {
				wait = k.window[len(k.window)-s.opts.RateLimit-1].Add(time.Second).Sub(now)
			}
			k.stats.RateLimited++
			secs := strconv.Itoa(int(math.Ceil(wait.Seconds())))
			w.Header().Set("retry-after", secs)
			w.Header().Set("ratelimit-limit", strconv.Itoa(s.opts.RateLimit))
			w.Header().Set("ratelimit-remaining", "0")
			w.Header().Set("ratelimit-reset", secs)
			writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "Too many requests. You can only make "+strconv.Itoa(s.opts.RateLimit)+" requests per second.")
			return
		}
		h(w, r, s.teams[k.team])
	})
}

func countCall(m map[string]int, pattern string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[pattern]++
	return m
}

type webhookRequest struct {
	Endpoint *string  `json:"endpoint"`
	Events   []string `json:"events"`
	Status   *string  `json:"status"`
}

// decode reads a JSON body, answering 422 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "validation_error", "Invalid JSON body")
		return false
	}
	return true
}

// validate checks endpoint and events the way the API does, answering 422 when they are bad.
func validate(w http.ResponseWriter, endpoint *string, events []string, eventsGiven bool) bool {
	if endpoint != nil {
		u, err := url.Parse(*endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			writeError(w, http.StatusUnprocessableEntity, "validation_error", "The `endpoint` field must be a valid URL.")
			return false
		}
	}
	if eventsGiven && len(events) == 0 {
		writeError(w, http.StatusUnprocessableEntity, "validation_error", "The `events` field must contain at least 1 item.")
		return false
	}
	for _, e := range events {
		if !slices.Contains(resendapi.EventTypes, e) {
			writeError(w, http.StatusUnprocessableEntity, "validation_error", "Invalid event type: "+e)
			return false
		}
	}
	return true
}

func (s *Sim) create(w http.ResponseWriter, r *http.Request, t *team) {
	var req webhookRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Endpoint == nil {
		writeError(w, http.StatusUnprocessableEntity, "missing_required_field", "Missing `endpoint` field.")
		return
	}
	if !validate(w, req.Endpoint, req.Events, true) {
		return
	}
	wh := &webhook{
		id: newUUID(), endpoint: *req.Endpoint, events: slices.Clone(req.Events), status: "enabled",
		secret: signing.NewSecret(), createdAt: time.Now().UTC().Format("2006-01-02 15:04:05.000-07"),
	}
	t.webhooks = append([]*webhook{wh}, t.webhooks...)
	s.opts.Log.Info("webhook created", "id", wh.id, "endpoint", redactURL(wh.endpoint), "events", len(wh.events))
	writeJSON(w, http.StatusCreated, map[string]any{"object": "webhook", "id": wh.id, "signing_secret": wh.secret})
}

func (t *team) find(id string) *webhook {
	for _, wh := range t.webhooks {
		if wh.id == id {
			return wh
		}
	}
	return nil
}

func (s *Sim) list(w http.ResponseWriter, r *http.Request, t *team) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusUnprocessableEntity, "validation_error", "The `limit` parameter must be between 1 and 100.")
			return
		}
		limit = n
	}
	start := 0
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(t.webhooks, func(wh *webhook) bool { return wh.id == after })
		if i < 0 {
			writeError(w, http.StatusUnprocessableEntity, "validation_error", "The `after` cursor is not a webhook of this team.")
			return
		}
		start = i + 1
	}
	end := min(start+limit, len(t.webhooks))
	data := []map[string]any{}
	for _, wh := range t.webhooks[start:end] {
		data = append(data, map[string]any{"id": wh.id, "created_at": wh.createdAt, "status": wh.status, "endpoint": wh.endpoint, "events": wh.events})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "has_more": end < len(t.webhooks), "data": data})
}

func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "Webhook not found")
}

func (s *Sim) get(w http.ResponseWriter, r *http.Request, t *team) {
	wh := t.find(r.PathValue("id"))
	if wh == nil {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "webhook", "id": wh.id, "created_at": wh.createdAt, "status": wh.status,
		"endpoint": wh.endpoint, "events": wh.events, "signing_secret": wh.secret,
	})
}

func (s *Sim) update(w http.ResponseWriter, r *http.Request, t *team) {
	wh := t.find(r.PathValue("id"))
	if wh == nil {
		notFound(w)
		return
	}
	var req webhookRequest
	if !decode(w, r, &req) || !validate(w, req.Endpoint, req.Events, req.Events != nil) {
		return
	}
	if req.Status != nil && *req.Status != "enabled" && *req.Status != "disabled" {
		writeError(w, http.StatusUnprocessableEntity, "validation_error", "The `status` field must be enabled or disabled.")
		return
	}
	if req.Endpoint != nil {
		wh.endpoint = *req.Endpoint
	}
	if req.Events != nil {
		wh.events = slices.Clone(req.Events)
	}
	if req.Status != nil {
		wh.status = *req.Status
		if wh.status == "enabled" {
			wh.failingSince = time.Time{}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "webhook", "id": wh.id})
}

func (s *Sim) remove(w http.ResponseWriter, r *http.Request, t *team) {
	id := r.PathValue("id")
	i := slices.IndexFunc(t.webhooks, func(wh *webhook) bool { return wh.id == id })
	if i < 0 {
		notFound(w)
		return
	}
	t.webhooks = slices.Delete(t.webhooks, i, i+1)
	writeJSON(w, http.StatusOK, map[string]any{"object": "webhook", "id": id, "deleted": true})
}

func (s *Sim) rotate(w http.ResponseWriter, r *http.Request, t *team) {
	wh := t.find(r.PathValue("id"))
	if wh == nil {
		notFound(w)
		return
	}
	wh.previous, wh.secret = wh.secret, signing.NewSecret()
	wh.previousUntil = time.Now().Add(s.scaled(s.opts.DualSigningWindow))
	s.opts.Log.Info("signing secret rotated", "id", wh.id)
	writeJSON(w, http.StatusOK, map[string]any{"object": "webhook", "id": wh.id, "signing_secret": wh.secret})
}

// newUUID is a random (version 4) UUID, the format of Resend's ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// redactURL keeps scheme, host and path: queries may carry tokens.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// Server is a Sim listening on a TCP address (the sandbox runs one).
type Server struct {
	*Sim
	// URL is the API's base URL, http://host:port.
	URL  string
	srv  *http.Server
	done chan struct{}
}

// Listen serves a new Sim on addr (e.g. "127.0.0.1:0") until Close.
func Listen(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("resend simulator: %w", err)
	}
	sim := New(opts)
	s := &Server{Sim: sim, URL: "http://" + ln.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sim.opts.Log.Error("resend simulator stopped", "error", err)
		}
	}()
	return s, nil
}

// Close stops serving and delivering.
func (s *Server) Close() {
	_ = s.srv.Close()
	<-s.done
	s.Sim.Close()
}
