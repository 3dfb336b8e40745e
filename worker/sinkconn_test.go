package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// lastRequest is the last request the sink saw.
func (s *testSink) lastRequest() sinkRequest {
	reqs := s.requests()
	return reqs[len(reqs)-1]
}

// newSinks returns a Sink on the lean HTTP/1.1 pool and one on net/http's transport, same config.
func newSinks(t *testing.T, cfg SinkConfig) (lean, std *Sink) {
	t.Helper()
	lean, err := NewSink(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	std, err = NewSink(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lean.conns == nil {
		t.Fatal("an http:// sink without a proxy is not served by the HTTP/1.1 pool")
	}
	withoutPool(std)
	t.Cleanup(func() { lean.Close(); std.Close() })
	return lean, std
}

// The HTTP/1.1 pool sends what net/http's transport sends (as a server parses it) and maps
// every kind of answer to the same outcome.
func TestHTTP1PoolMatchesTransport(t *testing.T) {
	t.Parallel()
	srv := newTestSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if v := q.Get("retry-after"); v != "" {
			w.Header().Set("Retry-After", v)
		}
		if q.Get("close") != "" {
			w.Header().Set("Connection", "close")
		}
		code, _ := strconv.Atoi(q.Get("code"))
		w.WriteHeader(code)
		if n, _ := strconv.Atoi(q.Get("body")); n > 0 {
			_, _ = io.WriteString(w, strings.Repeat("x", n)) // longer than the server buffers: chunked
		}
	})
	secret, secretFile := writeSecret(t)
	for _, tc := range []struct {
		query string
		want  func(error) bool
	}{
		{"code=200", func(err error) bool { return err == nil }},
		{"code=204&body=3000", func(err error) bool { return err == nil }},
		{"code=200&body=200000", func(err error) bool { return err == nil }},
		{"code=202&close=1", func(err error) bool { return err == nil }},
		{"code=503&retry-after=7", func(err error) bool {
			var u *unavailableError
			return errors.As(err, &u) && u.class == "http 503" && u.retryAfter == 7*time.Second
		}},
		{"code=429&body=1000", func(err error) bool { return IsUnavailable(err) }},
		{"code=500", func(err error) bool { return err != nil && !IsUnavailable(err) && !IsPermanent(err) }},
		{"code=404", IsPermanent},
		{"code=302", func(err error) bool { return err != nil && !IsPermanent(err) && !IsUnavailable(err) }},
	} {
		lean, std := newSinks(t, SinkConfig{URL: srv.URL + "/hooks/a?" + tc.query, Timeout: 5 * time.Second, SecretFile: secretFile, MaxConns: 4})
		ev := &Event{ID: "msg_" + tc.query, Body: eventBody(EventEmailSent, 1024)}
		var seen []sinkRequest
		for _, s := range []*Sink{std, lean} {
			err := s.HandleEvent(context.Background(), ev)
			if !tc.want(err) {
				t.Errorf("%s: unexpected outcome %v", tc.query, err)
			}
			seen = append(seen, srv.lastRequest())
		}
		want, got := seen[0], seen[1]
		for _, h := range []string{"Content-Type", "User-Agent", "Webhook-Id", "Webhook-Signature"} {
			if got.header.Get(h) != want.header.Get(h) || want.header.Get(h) == "" {
				t.Errorf("%s: %s = %q, net/http sent %q", tc.query, h, got.header.Get(h), want.header.Get(h))
			}
		}
		if got.method != want.method || got.uri != want.uri || got.host != want.host || got.length != want.length || string(got.body) != string(want.body) {
			t.Errorf("%s: request %s %s host %s length %d differs from net/http's %s %s host %s length %d (or the body does)",
				tc.query, got.method, got.uri, got.host, got.length, want.method, want.uri, want.host, want.length)
		}
		wh, _ := svix.NewWebhook(secret)
		if err := wh.Verify(got.body, got.header); err != nil {
			t.Errorf("%s: signature does not verify: %v", tc.query, err)
		}
	}
}

// withoutPool makes s post through net/http's transport, as it does for https sinks.
func withoutPool(s *Sink) {
	s.conns.close()
	s.conns = nil
}

// Connections are reused while the sink keeps them, and replaced when it does not: a
// connection the sink closed while idle costs no failed delivery and the request is sent once.
func TestHTTP1PoolReuseAndStaleConnections(t *testing.T) {
	t.Parallel()
	srv := newTestSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("big") != "" {
			_, _ = io.WriteString(w, strings.Repeat("y", maxDrainedAnswer+10))
		}
	})
	s, err := NewSink(SinkConfig{URL: srv.URL + "/h", Timeout: 5 * time.Second, MaxConns: 4}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := &Event{ID: "msg_1", Body: []byte(`{"type":"email.sent"}`)}
	for range 20 {
		if err := s.HandleEvent(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("20 POSTs one after the other used %d connections, want 1", n)
	}

	srv.CloseClientConnections() // the sink drops the idle connection
	before := len(srv.requests())
	if err := s.HandleEvent(context.Background(), ev); err != nil {
		t.Fatalf("POST after the sink closed the idle connection: %v", err)
	}
	if got := len(srv.requests()) - before; got != 1 {
		t.Errorf("the sink saw the request %d times, want 1", got)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("connections = %d, want 2 (one new after the close)", n)
	}

	big, err := NewSink(SinkConfig{URL: srv.URL + "/h?big=1", Timeout: 5 * time.Second, MaxConns: 4}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	for range 2 {
		if err := big.HandleEvent(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.conns.Load(); n != 4 {
		t.Errorf("connections = %d, want 4: an answer longer than the drained bound is not read to its end, so its connection is not reused", n)
	}
}

// A cancelled attempt (the worker stops after its grace) interrupts a POST at once; a sink
// that does not answer in time is a timeout; interim 1xx answers are skipped.
func TestHTTP1PoolCancelTimeoutInterim(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	srv := newTestSink(t, func(int, http.ResponseWriter, *http.Request) {
		select {
		case <-release:
		case <-time.After(time.Minute):
		}
	})
	s, err := NewSink(SinkConfig{URL: srv.URL, Timeout: time.Minute}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err = s.HandleEvent(ctx, &Event{ID: "msg_1", Body: []byte("{}")})
	if !errors.Is(err, errAttemptCut) || time.Since(start) > 30*time.Second {
		t.Errorf("cancelled POST: %v after %s, want errAttemptCut at once", err, time.Since(start))
	}

	s2, err := NewSink(SinkConfig{URL: srv.URL, Timeout: 200 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	err = s2.HandleEvent(context.Background(), &Event{ID: "msg_2", Body: []byte("{}")})
	if v := classify(err); v.kind != verdictDown || v.class != "timeout" {
		t.Errorf("slow sink: %v (%+v), want down/timeout", err, v)
	}

	interim := listen(t, func(c net.Conn) {
		defer func() { _ = c.Close() }()
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
	})
	s3, err := NewSink(SinkConfig{URL: "http://" + interim + "/", Timeout: 5 * time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if err := s3.HandleEvent(context.Background(), &Event{ID: "msg_3", Body: []byte("{}")}); err != nil {
		t.Errorf("103 then 201: %v, want delivered", err)
	}
}

// The pool serves plain http:// sinks only; https, a proxy and an id that is not a valid
// header value go through net/http, which rejects the id rather than sending a split header.
func TestHTTP1PoolScope(t *testing.T) {
	t.Parallel()
	noProxy := func(*http.Request) (*url.URL, error) { return nil, nil }
	viaProxy := func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy:3128") }
	for _, tc := range []struct {
		url   string
		proxy func(*http.Request) (*url.URL, error)
		want  bool
	}{
		{"http://sink.ns.svc:8080/h?x=1", noProxy, true},
		{"http://[::1]/h", noProxy, true},
		{"https://sink.ns.svc/h", noProxy, false},
		{"http://sink.ns.svc/h", viaProxy, false},
		{"http://user:pw@sink.ns.svc/h", noProxy, false},
		{"http://[fe80::1%25eth0]:8080/h", noProxy, false},
	} {
		u, _ := url.Parse(tc.url)
		p := newHTTP1Pool(u, SinkConfig{Timeout: time.Second}, tc.proxy)
		if (p != nil) != tc.want {
			t.Errorf("%s: pool %v, want %v", tc.url, p != nil, tc.want)
		}
	}
	u, _ := url.Parse("http://[::1]/h")
	if p := newHTTP1Pool(u, SinkConfig{Timeout: time.Second}, noProxy); p.addr != "[::1]:80" || !strings.Contains(string(p.head), "Host: [::1]\r\n") {
		t.Errorf("IPv6 sink: dials %q, head %q", p.addr, p.head)
	}

	srv := newTestSink(t, status(http.StatusOK))
	s, err := NewSink(SinkConfig{URL: srv.URL, Timeout: 5 * time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.HandleEvent(context.Background(), &Event{ID: "msg_1\r\nX-Injected: 1", Body: []byte("{}")}); err == nil {
		t.Error("an id with CR LF was sent")
	}
	for _, r := range srv.requests() {
		if r.header.Get("X-Injected") != "" {
			t.Error("an id split the headers")
		}
	}
}

// FuzzReadAnswer: whatever a sink answers, reading it neither panics nor keeps a connection
// whose answer was not a complete final one.
func FuzzReadAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody until close",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"garbage\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, keep, err := readAnswer(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			if keep {
				t.Fatalf("keep after an error: %v", err)
			}
			return
		}
		if a.code < 100 || a.code > 999 {
			t.Fatalf("status %d read as an answer", a.code)
		}
		if keep && a.code < 200 {
			t.Fatalf("keep after an interim answer %d", a.code)
		}
	})
}
