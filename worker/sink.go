package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	svix "github.com/svix/svix-webhooks/go"
)

// SinkConfig says where and how the built-in forwarder delivers events.
type SinkConfig struct {
	// URL is the http(s) endpoint every event is POSTed to.
	URL string
	// Timeout bounds one POST (connect, send, response headers and body).
	Timeout time.Duration
	// SecretFile, when set, holds the whsec_… secret the POSTs are signed with. The file is
	// re-read when it changes, so a rotated Kubernetes Secret takes effect without a restart.
	SecretFile string
	// MaxConns bounds the idle connections kept to the sink; set it to the worker's concurrency.
	MaxConns int
}

// Validate reports a config the forwarder cannot use.
func (c SinkConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("sink url is empty")
	case err != nil:
		return fmt.Errorf("sink url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("sink url %q: scheme must be http or https", c.URL)
	case u.Host == "":
		return fmt.Errorf("sink url %q has no host", c.URL)
	case c.Timeout <= 0:
		return fmt.Errorf("sink timeout %s: must be positive", c.Timeout)
	}
	return nil
}

// Sink is the built-in handler: it POSTs each event's original body to an HTTP endpoint,
// signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature), so the
// endpoint can verify it with any Svix library.
//
// Outcomes: 2xx → done; 408, 429, 5xx, timeouts, connection errors and redirects → retried per
// the retry policy; any other 4xx → dead-lettered at once (the sink rejected the event itself).
type Sink struct {
	cfg     SinkConfig
	client  *http.Client
	secret  *secretFile
	log     *slog.Logger
	results *prometheus.CounterVec
	byClass map[int]prometheus.Counter // status/100 → counter, resolved once
	timeout prometheus.Counter
	failed  prometheus.Counter
}

// NewSink validates cfg, loads the secret (failing when the file is unusable) and registers
// the sink's metrics with reg.
func NewSink(cfg SinkConfig, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, client: newSinkClient(cfg), log: log}
	if cfg.SecretFile != "" {
		s.secret = &secretFile{path: cfg.SecretFile, log: log}
		if _, err := s.secret.load(time.Now()); err != nil {
			return nil, err
		}
	}
	s.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rwh_worker_sink_requests_total",
		Help: "POSTs to the sink by result: the status class (2xx, 4xx, 5xx, …), timeout or error.",
	}, []string{"result"})
	s.byClass = map[int]prometheus.Counter{}
	for class := 1; class <= 5; class++ {
		s.byClass[class] = s.results.WithLabelValues(strconv.Itoa(class) + "xx")
	}
	s.timeout, s.failed = s.results.WithLabelValues("timeout"), s.results.WithLabelValues("error")
	if reg != nil {
		if err := reg.Register(s.results); err != nil {
			return nil, fmt.Errorf("register sink metrics: %w", err)
		}
	}
	return s, nil
}

// newSinkClient is one pooled client for all attempts: keep-alive connections up to the
// worker's concurrency, bounded dials, no redirects (a POST must not silently become a GET).
func newSinkClient(cfg SinkConfig) *http.Client {
	conns := max(cfg.MaxConns, 2)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(cfg.Timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(cfg.Timeout, 10*time.Second),
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // the answer is drained, never read: no gzip negotiation
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (s *Sink) passThrough() {} // forwards Body as is; needs no decoded envelope

// Close releases idle connections.
func (s *Sink) Close() { s.client.CloseIdleConnections() }

// HandleEvent POSTs ev to the sink.
func (s *Sink) HandleEvent(ctx context.Context, ev *Event) error {
	ctx, cancel := withTimeoutIfSooner(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return Permanent(fmt.Errorf("build sink request: %w", err))
	}
	now := time.Now()
	req.Header.Set("content-type", "application/json")
	req.Header.Set("user-agent", "resend-webhook-operator-worker")
	req.Header.Set("webhook-id", ev.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	if s.secret != nil {
		wh, err := s.secret.load(now)
		if err != nil {
			return err // retried: the secret may be fixed before attempts run out
		}
		sig, err := wh.Sign(ev.ID, now, ev.Body)
		if err != nil {
			return fmt.Errorf("sign sink request: %w", err)
		}
		req.Header.Set("webhook-signature", sig)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			s.timeout.Inc()
			return fmt.Errorf("sink: no answer in time (sink timeout %s, or the attempt's max duration): %w", s.cfg.Timeout, err)
		}
		s.failed.Inc()
		return fmt.Errorf("sink: %w", err)
	}
	// Drain a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if c, ok := s.byClass[resp.StatusCode/100]; ok {
		c.Inc()
	}
	return sinkOutcome(resp.StatusCode)
}

// sinkOutcome maps the sink's status to nil (done), an error (retry) or a Permanent error.
func sinkOutcome(code int) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return fmt.Errorf("sink answered %d", code)
	case code >= 400 && code < 500:
		return Permanent(fmt.Errorf("sink rejected the event with %d", code))
	default: // 1xx/3xx: not an answer a webhook sink should give; retry rather than drop
		return fmt.Errorf("sink answered unexpected status %d", code)
	}
}

// secretFile caches the signing secret and re-reads the file at most once per second, so a
// rotated Secret (Kubernetes swaps the mounted file) is used within a second or two.
type secretFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	checked time.Time
	raw     string
	wh      *svix.Webhook
	err     error
}

// load returns the current secret. A file that becomes unreadable or invalid keeps the last
// good secret in use (logged once); it is an error only when there never was a good one.
func (f *secretFile) load(now time.Time) (*svix.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wh != nil && now.Sub(f.checked) < time.Second {
		return f.wh, nil
	}
	f.checked = now
	b, err := os.ReadFile(f.path)
	if err != nil {
		return f.keep(fmt.Errorf("--sink-secret-file: %w", err))
	}
	raw := strings.TrimSpace(string(b))
	if raw == f.raw && f.wh != nil {
		return f.wh, nil
	}
	wh, err := svix.NewWebhook(raw)
	if err != nil || !strings.HasPrefix(raw, "whsec_") {
		return f.keep(fmt.Errorf("--sink-secret-file %s: not a whsec_… secret", f.path))
	}
	f.raw, f.wh, f.err = raw, wh, nil
	return wh, nil
}

func (f *secretFile) keep(err error) (*svix.Webhook, error) {
	if f.err == nil && f.wh != nil && f.log != nil { // log the transition, not every send
		f.log.Warn("sink secret file unusable; still signing with the previous secret", "error", err.Error())
	}
	f.err = err
	if f.wh != nil {
		return f.wh, nil
	}
	return nil, err
}
