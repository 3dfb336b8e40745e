// Package resendapi is the operator's client of Resend's webhooks API, on top of resend-go.
// Every call of one API key goes through one rate limiter shared by all webhooks using that key,
// a 429 makes every caller of that key hold off for its retry-after, and failures come back as
// *Error: the HTTP status and a bounded message that never contains the API key.
package resendapi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/resend/resend-go/v3"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// DefaultBaseURL is Resend's public API.
const DefaultBaseURL = "https://api.resend.com"

// Webhook states at Resend.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Defaults of Options.
const (
	// DefaultInterval between two requests of one key: Resend allows about 2 requests/s per
	// key; staying below (1.67/s) keeps scheduling and network jitter from putting three
	// requests into one second at Resend's end.
	DefaultInterval = 600 * time.Millisecond
	// DefaultMaxWait is the longest a call queues for its key's limiter; beyond it the call
	// returns a rate-limit *Error at once, so a reconcile requeues instead of holding a worker.
	DefaultMaxWait = 2 * time.Second
	// DefaultTimeout bounds one HTTP request.
	DefaultTimeout = 10 * time.Second

	// maxRetryAfter caps a retry-after Resend asks for (a bogus header must not park a webhook
	// for days); defaultRetryAfter applies when a 429 carries none.
	maxRetryAfter     = 10 * time.Minute
	defaultRetryAfter = time.Second
	// maxMessage bounds the part of Resend's error text kept in an *Error (it reaches status
	// conditions and events).
	maxMessage = 200
	// maxListPages bounds the pages List follows (100 webhooks each).
	maxListPages = 50
	// idleKeyTTL: limiters of keys unused this long are dropped (rotated keys do not pile up).
	idleKeyTTL = time.Hour
)

// Options configure an API.
type Options struct {
	// BaseURL of the API; default DefaultBaseURL (tests and the sandbox point it at the simulator).
	BaseURL string
	// HTTPClient; default one with DefaultTimeout.
	HTTPClient *http.Client
	// Interval is the minimum spacing of two requests of one key; default DefaultInterval.
	Interval time.Duration
	// MaxWait is how long a call may queue for its key's limiter; default DefaultMaxWait.
	MaxWait time.Duration
}

// API holds the rate limiters of every API key in use. It is safe for concurrent use.
type API struct {
	base     *url.URL
	http     *http.Client
	interval time.Duration
	maxWait  time.Duration

	mu   sync.Mutex
	keys map[string]*keyState // sha256 of the key → its limiter; the key itself is not kept
}

// keyState is the shared budget of one API key.
type keyState struct {
	nextSlot     time.Time // the earliest time the next queued call may go
	lastSent     time.Time // when the last call of this key actually went
	blockedUntil time.Time // after a 429: no request of this key before
	lastUsed     time.Time
}

// New returns an API for opts.
func New(opts Options) (*API, error) {
	raw := opts.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	base, err := url.Parse(raw)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("resend API URL %q: want http(s)://host[/path]", raw)
	}
	// resend-go resolves relative paths ("webhooks") against the base: keep its path a directory.
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	a := &API{base: base, http: opts.HTTPClient, interval: opts.Interval, maxWait: opts.MaxWait, keys: map[string]*keyState{}}
	if a.http == nil {
		a.http = &http.Client{Timeout: DefaultTimeout}
	}
	a.http = &http.Client{
		Transport:     recordingTransport{base: cmpTransport(a.http.Transport)},
		CheckRedirect: a.http.CheckRedirect,
		Jar:           a.http.Jar,
		Timeout:       a.http.Timeout,
	}
	if a.interval <= 0 {
		a.interval = DefaultInterval
	}
	if a.maxWait <= 0 {
		a.maxWait = DefaultMaxWait
	}
	return a, nil
}

func cmpTransport(t http.RoundTripper) http.RoundTripper {
	if t == nil {
		return http.DefaultTransport
	}
	return t
}

// BaseURL is the API's base URL.
func (a *API) BaseURL() string { return strings.TrimSuffix(a.base.String(), "/") }

// Client returns the API as seen with apiKey. Clients of the same key share one limiter.
// A Client is meant for one sync: it holds the key only as long as the caller keeps it.
func (a *API) Client(apiKey string) *Client {
	apiKey = strings.TrimSpace(apiKey) // Secret values often end with a newline
	rc := resend.NewCustomClient(a.http, apiKey)
	rc.BaseURL = a.base
	return &Client{api: a, rc: rc, apiKey: apiKey, key: a.stateOf(apiKey)}
}

func (a *API) stateOf(apiKey string) *keyState {
	sum := sha256.Sum256([]byte(apiKey))
	id := hex.EncodeToString(sum[:])
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, s := range a.keys {
		if now.Sub(s.lastUsed) > idleKeyTTL && k != id {
			delete(a.keys, k)
		}
	}
	s := a.keys[id]
	if s == nil {
		s = &keyState{}
		a.keys[id] = s
	}
	s.lastUsed = now
	return s
}

// reserve waits for the key's turn, or returns a rate-limit *Error saying how long to wait when
// that is longer than maxWait or Resend asked this key to hold off (also while this call was
// waiting for its turn). Turns are spaced from when calls actually go, not from when they were
// queued, so a call that woke late cannot bunch up with the next one.
func (a *API) reserve(ctx context.Context, s *keyState, op string) error {
	a.mu.Lock()
	now := time.Now()
	if err := a.heldOff(s, op, now); err != nil {
		a.mu.Unlock()
		return err
	}
	slot := now
	for _, t := range []time.Time{s.nextSlot, s.lastSent.Add(a.interval)} {
		if t.After(slot) {
			slot = t
		}
	}
	delay := slot.Sub(now)
	if delay > a.maxWait {
		a.mu.Unlock()
		return &Error{Op: op, StatusCode: http.StatusTooManyRequests, Message: "this API key's request budget is used up for now", RetryAfter: delay}
	}
	s.nextSlot = slot.Add(a.interval)
	a.mu.Unlock()
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return &Error{Op: op, Message: ctx.Err().Error()}
			}
		}
		a.mu.Lock()
		now := time.Now()
		if err := a.heldOff(s, op, now); err != nil {
			a.mu.Unlock()
			return err
		}
		if delay = s.lastSent.Add(a.interval).Sub(now); delay <= 0 {
			s.lastSent = now
			a.mu.Unlock()
			return nil
		}
		a.mu.Unlock()
	}
}

// heldOff is the rate-limit *Error while the key holds off after a 429. Caller holds a.mu.
func (a *API) heldOff(s *keyState, op string, now time.Time) error {
	if wait := s.blockedUntil.Sub(now); wait > 0 {
		return &Error{Op: op, StatusCode: http.StatusTooManyRequests, Message: "holding off after Resend's 429 for this API key", RetryAfter: wait}
	}
	return nil
}

// holdOff makes every caller of the key wait d (Resend answered 429).
func (a *API) holdOff(s *keyState, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if until := time.Now().Add(d); until.After(s.blockedUntil) {
		s.blockedUntil = until
	}
}

// Webhook is a webhook registered at Resend.
type Webhook struct {
	ID       string
	Endpoint string
	Events   []string
	// Status is StatusEnabled or StatusDisabled.
	Status string
	// SigningSecret is set by Create, Get and RotateSigningSecret (not by List).
	SigningSecret string
}

// Update changes a webhook; nil / empty fields are left as they are.
type Update struct {
	Endpoint *string
	Events   []string
	Status   *string
}

// Client calls the API with one key.
type Client struct {
	api    *API
	rc     *resend.Client
	apiKey string
	key    *keyState
}

// Create registers endpoint for events; the answer carries the new webhook's signing secret.
func (c *Client) Create(ctx context.Context, endpoint string, events []string) (Webhook, error) {
	var out *resend.CreateWebhookResponse
	err := c.do(ctx, "create webhook", func(ctx context.Context) (err error) {
		out, err = c.rc.Webhooks.CreateWithContext(ctx, &resend.CreateWebhookRequest{Endpoint: endpoint, Events: events})
		return err
	})
	if err != nil {
		return Webhook{}, err
	}
	if out.Id == "" {
		return Webhook{}, &Error{Op: "create webhook", Message: "the answer has no webhook id"}
	}
	return Webhook{ID: out.Id, Endpoint: endpoint, Events: events, Status: StatusEnabled, SigningSecret: out.SigningSecret}, nil
}

// Get reads one webhook, its state and signing secret.
func (c *Client) Get(ctx context.Context, id string) (Webhook, error) {
	var out *resend.Webhook
	err := c.do(ctx, "get webhook", func(ctx context.Context) (err error) {
		out, err = c.rc.Webhooks.GetWithContext(ctx, url.PathEscape(id))
		return err
	})
	if err != nil {
		return Webhook{}, err
	}
	return Webhook{ID: out.Id, Endpoint: out.Endpoint, Events: out.Events, Status: out.Status, SigningSecret: out.SigningSecret}, nil
}

// List returns every webhook the key's account has, following pages.
func (c *Client) List(ctx context.Context) ([]Webhook, error) {
	var all []Webhook
	var after *string
	for range maxListPages {
		var out *resend.ListWebhooksResponse
		err := c.do(ctx, "list webhooks", func(ctx context.Context) (err error) {
			out, err = c.rc.Webhooks.ListWithOptions(ctx, &resend.ListOptions{Limit: new(100), After: after})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, w := range out.Data {
			all = append(all, Webhook{ID: w.Id, Endpoint: w.Endpoint, Events: w.Events, Status: w.Status})
		}
		if !out.HasMore || len(out.Data) == 0 {
			return all, nil
		}
		after = new(out.Data[len(out.Data)-1].Id)
	}
	return nil, &Error{Op: "list webhooks", Message: fmt.Sprintf("more than %d pages of webhooks", maxListPages)}
}

// Update changes a webhook's endpoint, events or state.
func (c *Client) Update(ctx context.Context, id string, u Update) error {
	return c.do(ctx, "update webhook", func(ctx context.Context) error {
		_, err := c.rc.Webhooks.UpdateWithContext(ctx, url.PathEscape(id), &resend.UpdateWebhookRequest{Endpoint: u.Endpoint, Events: u.Events, Status: u.Status})
		return err
	})
}

// Remove deletes a webhook. A webhook that no longer exists is an *Error with status 404.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, "remove webhook", func(ctx context.Context) error {
		_, err := c.rc.Webhooks.RemoveWithContext(ctx, url.PathEscape(id))
		return err
	})
}

// rotateResponse is the answer of POST /webhooks/{id}/signing-secret/rotate (the create shape).
type rotateResponse struct {
	Object        string `json:"object"`
	ID            string `json:"id"`
	SigningSecret string `json:"signing_secret"`
}

// RotateSigningSecret makes Resend issue a new signing secret and returns it. Resend then
// signs every delivery with the new and the previous secret for 24 hours.
func (c *Client) RotateSigningSecret(ctx context.Context, id string) (string, error) {
	var out rotateResponse
	err := c.do(ctx, "rotate signing secret", func(ctx context.Context) error {
		req, err := c.rc.NewRequest(ctx, http.MethodPost, "webhooks/"+url.PathEscape(id)+"/signing-secret/rotate", nil)
		if err != nil {
			return err
		}
		_, err = c.rc.Perform(req, &out)
		return err
	})
	if err != nil {
		return "", err
	}
	if out.SigningSecret == "" {
		return "", &Error{Op: "rotate signing secret", Message: "the answer has no signing secret"}
	}
	return out.SigningSecret, nil
}

// do runs one request under the key's limiter and turns its failure into an *Error.
func (c *Client) do(ctx context.Context, op string, call func(context.Context) error) error {
	if err := c.api.reserve(ctx, c.key, op); err != nil {
		return err
	}
	ans := &answer{}
	err := call(context.WithValue(ctx, answerKey{}, ans))
	if err == nil {
		return nil
	}
	e := c.classify(op, ans, err)
	if e.StatusCode == http.StatusTooManyRequests {
		c.api.holdOff(c.key, e.RetryAfter)
	}
	return e
}

func (c *Client) classify(op string, ans *answer, err error) *Error {
	e := &Error{Op: op, StatusCode: ans.status}
	msg := err.Error()
	if rl, ok := errors.AsType[*resend.RateLimitError](err); ok {
		e.StatusCode = http.StatusTooManyRequests
		msg = rl.Message
		e.RetryAfter = parseRetryAfter(rl.RetryAfter, time.Now())
	} else if e.StatusCode == http.StatusTooManyRequests {
		e.RetryAfter = parseRetryAfter(ans.retryAfter, time.Now())
	}
	switch {
	case e.StatusCode == 0:
		msg = "no answer from " + c.api.base.Host + ": " + networkMessage(err)
	case e.StatusCode >= 200 && e.StatusCode < 300:
		msg = "unreadable answer: " + msg
	}
	msg = strings.TrimPrefix(msg, "[ERROR]: ")
	if c.apiKey != "" {
		msg = strings.ReplaceAll(msg, c.apiKey, "[redacted]")
	}
	e.Message = bounded.Text(msg, maxMessage)
	return e
}

// networkMessage says why no answer came, by class: the raw dial text adds addresses and
// syscall noise, not insight.
func networkMessage(err error) string {
	var tlsErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	case errors.As(err, &tlsErr):
		return "TLS certificate not trusted"
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return "DNS lookup failed"
	}
	return "network error"
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// parseRetryAfter reads a retry-after header: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	d := defaultRetryAfter
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
		d = time.Duration(secs * float64(time.Second))
	} else if t, err := http.ParseTime(v); err == nil && t.After(now) {
		d = t.Sub(now)
	}
	return min(d, maxRetryAfter)
}

// answer is what the transport saw of the HTTP response (resend-go keeps the status of most
// errors to itself).
type answer struct {
	status     int
	retryAfter string
}

type answerKey struct{}

type recordingTransport struct{ base http.RoundTripper }

func (t recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if ans, ok := req.Context().Value(answerKey{}).(*answer); ok && resp != nil {
		ans.status = resp.StatusCode
		ans.retryAfter = resp.Header.Get("Retry-After")
	}
	return resp, err
}

// Error is a failed API call.
type Error struct {
	Op string
	// StatusCode is Resend's HTTP status; 0 when no answer came (network, timeout).
	StatusCode int
	// Message is Resend's error message or the network error, bounded, without the API key.
	Message string
	// RetryAfter is how long to wait before the next call of this key (429).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	switch {
	case e.StatusCode == 0:
		return fmt.Sprintf("resend: %s: %s", e.Op, e.Message)
	case e.RetryAfter > 0:
		return fmt.Sprintf("resend: %s: HTTP %d (retry in %s): %s", e.Op, e.StatusCode, e.RetryAfter.Round(time.Millisecond), e.Message)
	}
	return fmt.Sprintf("resend: %s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
}

// StatusOf is the HTTP status of a failed call (0 without an answer or for other errors).
func StatusOf(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports a 404: the webhook does not exist (any more).
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// IsUnauthorized reports that Resend rejected the API key: missing, invalid, revoked, or
// without the permission the webhooks API needs.
func IsUnauthorized(err error) bool {
	s := StatusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// RetryAfter is how long to wait after a rate-limited call.
func RetryAfter(err error) (time.Duration, bool) {
	if e, ok := errors.AsType[*Error](err); ok && e.StatusCode == http.StatusTooManyRequests {
		return e.RetryAfter, true
	}
	return 0, false
}
