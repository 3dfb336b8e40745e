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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
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

// Validate reports a config the forwarder cannot use. Its messages show the URL without path
// or query, which may carry a token.
func (c SinkConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("sink url is empty")
	case err != nil:
		return errors.New("sink url does not parse")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("sink url %q: scheme must be http or https", redactURL(u))
	case u.Host == "":
		return fmt.Errorf("sink url %q has no host", redactURL(u))
	case c.Timeout <= 0:
		return fmt.Errorf("sink timeout %s: must be positive", c.Timeout)
	}
	return nil
}

// redactURL is u without path, query and fragment ("https://host/…"): what logs and errors
// may show of a sink URL.
func redactURL(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		s += "/…"
	}
	return s
}

// Sink is the built-in handler: it POSTs each event's original body to an HTTP endpoint,
// signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature), so the
// endpoint can verify it with any Svix library.
//
// Outcomes: 2xx → done; connection errors, timeouts, 429, 502, 503 and 504 → Unavailable (the
// sink looks down: retried, and counted by the circuit breaker); 408, other 5xx and redirects →
// retried per the retry policy; any other 4xx → dead-lettered at once (the sink rejected the
// event itself). Errors never show the URL's path or query.
type Sink struct {
	cfg       SinkConfig
	url       *url.URL // parsed once; every request shares it (nothing writes to it)
	shown     string   // the URL as errors may show it
	transport *http.Transport
	conns     *http1Pool // plain http:// sinks; nil when the transport serves the sink
	secret    *secretFile
	log       *slog.Logger
	results   *prometheus.CounterVec
	byClass   map[int]prometheus.Counter // status/100 → counter, resolved once
	timeout   prometheus.Counter
	failed    prometheus.Counter
}

// NewSink validates cfg, loads the secret (failing when the file is unusable) and registers
// the sink's metrics with reg.
func NewSink(cfg SinkConfig, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL) // Validate parsed it
	s := &Sink{cfg: cfg, url: u, shown: redactURL(u), transport: newSinkTransport(cfg), log: log,
		conns: newHTTP1Pool(u, cfg, http.ProxyFromEnvironment)}
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

// newSinkTransport is one pool of keep-alive connections for all attempts, as many as the
// worker's concurrency, with bounded dials. The sink gets the transport, not an http.Client:
// a POST must not follow redirects (it would silently become a GET), and the client's
// redirect bookkeeping copies every request's headers for nothing.
func newSinkTransport(cfg SinkConfig) *http.Transport {
	conns := max(cfg.MaxConns, 2)
	return &http.Transport{
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
}

func (s *Sink) passThrough() {} // forwards Body as is; needs no decoded envelope

// Close releases idle connections.
func (s *Sink) Close() {
	s.transport.CloseIdleConnections()
	if s.conns != nil {
		s.conns.close()
	}
}

// Header names and fixed values of every POST, canonical and shared: no allocation per request.
var (
	sinkContentType = []string{"application/json"}
	sinkUserAgent   = []string{"resend-webhook-operator-worker"}
)

// HandleEvent POSTs ev to the sink.
func (s *Sink) HandleEvent(ctx context.Context, ev *Event) error {
	now := time.Now()
	r := postRequest{id: ev.ID, timestamp: strconv.FormatInt(now.Unix(), 10), body: ev.Body}
	if s.secret != nil {
		wh, err := s.secret.load(now)
		if err != nil {
			return err // retried: the secret may be fixed before attempts run out
		}
		if r.signature, err = wh.Sign(ev.ID, now, ev.Body); err != nil {
			return fmt.Errorf("sign sink request: %w", err)
		}
	}
	var a postAnswer
	var err error
	if s.conns != nil && validHeaderValue(r.id) {
		deadline := now.Add(s.cfg.Timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		a, err = s.conns.post(ctx, deadline, r)
	} else {
		a, err = s.roundTrip(ctx, r)
	}
	if err != nil {
		return s.transportError(ctx, err)
	}
	if c, ok := s.byClass[a.code/100]; ok {
		c.Inc()
	}
	return sinkOutcome(a.code, a.retryAfter, now)
}

// roundTrip POSTs r through net/http's transport (https, a proxy, or an id net/http rejects).
func (s *Sink) roundTrip(ctx context.Context, r postRequest) (postAnswer, error) {
	ctx, cancel := withTimeoutIfSooner(ctx, s.cfg.Timeout)
	defer cancel()
	hdr := http.Header{
		"Content-Type":      sinkContentType,
		"User-Agent":        sinkUserAgent,
		"Webhook-Id":        {r.id},
		"Webhook-Timestamp": {r.timestamp},
	}
	if r.signature != "" {
		hdr["Webhook-Signature"] = []string{r.signature}
	}
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           s.url,
		Host:          s.url.Host,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(r.body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(r.body)), nil },
		ContentLength: int64(len(r.body)),
	}).WithContext(ctx)
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return postAnswer{}, cutBy(ctx, err)
	}
	// Drain a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainedAnswer))
	_ = resp.Body.Close()
	return postAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}, nil
}

// transportError maps a failed POST (no answer) to the error the worker stores and logs: it
// names the URL by scheme and host only, and a sink that cannot be reached is Unavailable. A
// cancelled context (the worker stops) says nothing about the sink.
func (s *Sink) transportError(ctx context.Context, err error) error {
	err = fmt.Errorf("Post %s: %w", s.shown, err)
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		if errors.Is(err, context.Canceled) {
			s.failed.Inc()
			return fmt.Errorf("sink: %w: %w", errAttemptCut, err)
		}
		s.timeout.Inc()
		return &unavailableError{err: fmt.Errorf("sink: no answer in time (sink timeout %s, or the attempt's max duration): %w", s.cfg.Timeout, err), class: "timeout"}
	}
	s.failed.Inc()
	err = fmt.Errorf("sink: %w", err)
	if class := transportClass(err); class != "" {
		return &unavailableError{err: err, class: class}
	}
	return err
}

// transportClass names the kinds of transport failure that mean the sink is down; "" for the
// others (a TLS certificate problem, say, is a configuration error, not an outage).
func transportClass(err error) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	case os.IsTimeout(err):
		return "timeout"
	case errors.As(err, &dnsErr), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &opErr) && opErr.Op == "dial":
		return "unreachable"
	}
	return ""
}

// sinkOutcome maps the sink's status to nil (done), an error (retry), an Unavailable error
// (the sink is overloaded or down: retry and count toward the breaker, honouring Retry-After
// on 429 and 503) or a Permanent error.
func sinkOutcome(code int, retryAfter string, now time.Time) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return &unavailableError{err: fmt.Errorf("sink answered %d", code), class: "http " + strconv.Itoa(code), retryAfter: parseRetryAfter(retryAfter, now)}
	case code == http.StatusBadGateway || code == http.StatusGatewayTimeout:
		return &unavailableError{err: fmt.Errorf("sink answered %d", code), class: "http " + strconv.Itoa(code)}
	case code == http.StatusRequestTimeout, code >= 500:
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
	wh, err := signing.Parse(b)
	if err != nil {
		return f.keep(fmt.Errorf("--sink-secret-file %s: %w", f.path, err))
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
