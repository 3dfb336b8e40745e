package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// http1Pool POSTs to a plain http:// sink over keep-alive HTTP/1.1 connections: each request
// is written with one write and its answer read in the calling goroutine. net/http's Transport
// gives every connection a reader and a writer goroutine and hands each request to both; with
// a handler per event at worker concurrency those hand-offs cost more CPU on the worker's side
// than writing and reading the request itself. Parsing the answer is net/http's
// (http.ReadResponse). Sinks this does not serve (see newHTTP1Pool) go through net/http.
type http1Pool struct {
	addr        string // host:port dialled
	head        []byte // request line and the fixed headers
	maxIdle     int
	dialTimeout time.Duration

	mu     sync.Mutex
	idle   []*http1Conn // most recently used last
	closed bool
}

// http1Conn is one connection with its reader and a request buffer it reuses.
type http1Conn struct {
	net.Conn
	br        *bufio.Reader
	buf       []byte
	idleSince time.Time
	reused    bool
}

// Connections idle longer than this are closed rather than reused: servers drop idle
// keep-alive connections after a while (net/http's default is the same).
const http1IdleTimeout = 90 * time.Second

// maxKeptRequestBuffer bounds the request buffer a connection keeps between requests.
const maxKeptRequestBuffer = 16 << 10

// newHTTP1Pool returns the pool for u, or nil when net/http must serve it: https, a proxy the
// environment sets for it (proxy returns non-nil), user info or an IPv6 zone in the URL.
func newHTTP1Pool(u *url.URL, cfg SinkConfig, proxy func(*http.Request) (*url.URL, error)) *http1Pool {
	if u.Scheme != "http" || u.User != nil || strings.Contains(u.Host, "%") { // an IPv6 zone: net/http drops it from Host
		return nil
	}
	if p, err := proxy(&http.Request{URL: u}); p != nil || err != nil {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	head := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nContent-Type: %s\r\n",
		u.RequestURI(), u.Host, sinkUserAgent[0], sinkContentType[0])
	return &http1Pool{addr: net.JoinHostPort(u.Hostname(), port), head: head, maxIdle: max(cfg.MaxConns, 2),
		dialTimeout: min(cfg.Timeout, 5*time.Second)}
}

// postRequest is what varies between POSTs.
type postRequest struct {
	id, timestamp, signature string
	body                     []byte
}

// postAnswer is what the sink's answer decides.
type postAnswer struct {
	code       int
	retryAfter string
}

// errSinkTimeout marks a POST that ran into the sink timeout (or the attempt's deadline).
var errSinkTimeout = fmt.Errorf("sink did not answer in time: %w", context.DeadlineExceeded)

// post sends r and reads the answer by deadline. A connection the sink closed while it was
// idle fails before any answer: the request is sent once more on a new connection (the sink
// did not see it, or at worst sees it twice: delivery is at least once).
func (p *http1Pool) post(ctx context.Context, deadline time.Time, r postRequest) (postAnswer, error) {
	c, err := p.get(ctx, deadline)
	if err != nil {
		return postAnswer{}, err
	}
	a, unanswered, err := p.roundTrip(ctx, c, deadline, r)
	if err != nil && unanswered && c.reused && ctx.Err() == nil && time.Now().Before(deadline) {
		if c, err = p.dial(ctx, deadline); err != nil {
			return postAnswer{}, err
		}
		a, _, err = p.roundTrip(ctx, c, deadline, r)
	}
	return a, err
}

// roundTrip writes r on c and reads the answer. It returns c to the pool when the answer was
// read whole and the connection may be kept, and closes it otherwise. unanswered reports a
// connection that failed before the first byte of an answer.
func (p *http1Pool) roundTrip(ctx context.Context, c *http1Conn, deadline time.Time, r postRequest) (a postAnswer, unanswered bool, err error) {
	keep := false
	defer func() {
		if keep {
			p.put(c)
		} else {
			_ = c.Close()
		}
	}()
	if err := c.SetDeadline(deadline); err != nil {
		return a, true, err
	}
	// A cancelled attempt (the worker stops, or asynq's deadline) interrupts the I/O at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			keep = false // the deadline was cut: the connection is in an unknown state
			if err != nil {
				err = cutBy(ctx, err)
			}
		}
	}()

	buf := append(c.buf[:0], p.head...)
	buf = append(buf, "Content-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(r.body)), 10)
	buf = append(buf, "\r\nWebhook-Id: "...)
	buf = append(buf, r.id...)
	buf = append(buf, "\r\nWebhook-Timestamp: "...)
	buf = append(buf, r.timestamp...)
	if r.signature != "" {
		buf = append(buf, "\r\nWebhook-Signature: "...)
		buf = append(buf, r.signature...)
	}
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, r.body...)
	if cap(buf) <= maxKeptRequestBuffer {
		c.buf = buf[:0]
	}
	if _, err := c.Write(buf); err != nil {
		return a, true, ioError("write request", err)
	}
	if _, err := c.br.Peek(1); err != nil {
		return a, true, ioError("read answer", err)
	}
	a, keep, err = readAnswer(c.br)
	if err != nil {
		return a, false, ioError("read answer", err)
	}
	return a, false, nil
}

// readAnswer reads the sink's answer from br: interim 1xx answers (100 Continue, 103 Early
// Hints) are skipped, and up to maxDrainedAnswer of the body is drained. keep reports whether
// the connection is at the start of the next answer and the sink lets it be reused.
func readAnswer(br *bufio.Reader) (a postAnswer, keep bool, err error) {
	resp, err := http.ReadResponse(br, nil)
	for i := 0; err == nil && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols && i < 5; i++ {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		return a, false, err
	}
	// Drain a bounded amount; a longer answer costs the connection rather than the time.
	_, err = io.CopyN(io.Discard, resp.Body, maxDrainedAnswer+1)
	keep = errors.Is(err, io.EOF) && !resp.Close && resp.StatusCode >= 200
	return postAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}, keep, nil
}

// maxDrainedAnswer is how much of an answer's body is read so the connection can be reused.
const maxDrainedAnswer = 64 << 10

// ioError names the step that failed; a deadline becomes errSinkTimeout.
func ioError(op string, err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%s: %w", op, errSinkTimeout)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// cutBy is the error of a POST that ended because ctx did: it carries ctx.Err() as well, so
// that transportError tells a stopping worker (Canceled) from a deadline.
func cutBy(ctx context.Context, err error) error {
	if ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w (%w)", ctx.Err(), err)
}

// get takes the most recently used idle connection or dials a new one.
func (p *http1Pool) get(ctx context.Context, deadline time.Time) (*http1Conn, error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idleSince) < http1IdleTimeout {
			p.mu.Unlock()
			c.reused = true
			return c, nil
		}
		_ = c.Close()
	}
	p.mu.Unlock()
	return p.dial(ctx, deadline)
}

func (p *http1Pool) dial(ctx context.Context, deadline time.Time) (*http1Conn, error) {
	d := net.Dialer{Timeout: p.dialTimeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, cutBy(ctx, err)
		}
		if isTimeout(err) {
			return nil, fmt.Errorf("dial: %w", errSinkTimeout)
		}
		return nil, err
	}
	return &http1Conn{Conn: conn, br: bufio.NewReaderSize(conn, 4096)}, nil
}

// put keeps c for the next request, or closes it when the pool is full or closed.
func (p *http1Pool) put(c *http1Conn) {
	c.idleSince, c.reused = time.Now(), false
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// close closes the idle connections; those in use are closed when their request ends.
func (p *http1Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// validHeaderValue reports whether v can be sent as a header value as is (no control
// characters that would end or split the header).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}
