package receiver

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestInFlightBound: with --max-in-flight requests being served, the next one gets 503 at once,
// before its body is read; the held ones complete normally, and then requests pass again.
func TestInFlightBound(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxInFlight = 2 })
	body := event("email.sent")
	held := []*partial{
		startPartial(t, f.server.URL, signed(t, vectorSecret, "msg_held_1", time.Now(), body), body, 5),
		startPartial(t, f.server.URL, signed(t, vectorSecret, "msg_held_2", time.Now(), body), body, 5),
	}
	eventually(t, 5*time.Second, "both requests in flight", func() bool { return testutil.ToFloat64(f.metrics.inFlightGauge) == 2 })

	// Over the bound, a request is answered without its body being read: none is ever sent.
	over := startPartial(t, f.server.URL, signed(t, vectorSecret, "msg_over", time.Now(), body), body, 0)
	over.rest = nil
	r := over.finish(t)
	if r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "too many requests") {
		t.Fatalf("over the bound: %d %q Retry-After=%q", r.code, r.body, r.hdr.Get("Retry-After"))
	}
	if got := f.count("503", "overloaded"); got != 1 {
		t.Fatalf("requests_total{503,overloaded} = %v, want 1", got)
	}
	if n := f.tasks(t, "ns.hook"); n != 0 {
		t.Fatalf("tasks = %d, want 0: nothing completed yet", n)
	}

	for i, p := range held {
		if r := p.finish(t); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
			t.Fatalf("held request %d: %d %s", i, r.code, r.body)
		}
	}
	eventually(t, 5*time.Second, "nothing in flight", func() bool { return testutil.ToFloat64(f.metrics.inFlightGauge) == 0 })
	if r := f.deliver(t, "msg_over", body); r.code != http.StatusOK {
		t.Fatalf("after the held requests finished: %d %s", r.code, r.body)
	}
	if n := f.tasks(t, "ns.hook"); n != 3 {
		t.Fatalf("tasks = %d, want 3", n)
	}
}

// TestRedisDownAnswers503AtOnce: while the background probe reports an outage, a request that
// would be enqueued gets 503 redis_down without an enqueue attempt (so without waiting for
// --enqueue-timeout); the checks before it keep their precedence.
func TestRedisDownAnswers503AtOnce(t *testing.T) {
	var down atomic.Pointer[error]
	f := newFixture(t, func(o *Options) {
		o.Events = []string{"email.sent"}
		o.RedisHealth = func() error {
			if e := down.Load(); e != nil {
				return *e
			}
			return nil
		}
	})
	outage := errors.New("redis unreachable: dial tcp 127.0.0.1:6379: connect: connection refused")
	down.Store(&outage)
	sent, opened := event("email.sent"), event("email.opened")

	r := f.deliver(t, "msg_rd_1", sent)
	if r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "queue unreachable") {
		t.Fatalf("redis down: %d %q", r.code, r.body)
	}
	if got := f.count("503", "redis_down"); got != 1 {
		t.Fatalf("requests_total{503,redis_down} = %v", got)
	}
	if n := histogramCount(t, f); n != 0 {
		t.Fatalf("%d enqueues were attempted while redis was reported down", n)
	}
	if r := f.post(t, signed(t, otherSecret, "msg_rd_2", time.Now(), sent), sent); r.code != http.StatusUnauthorized {
		t.Fatalf("forgery while redis is down: %d, want 401", r.code)
	}
	if r := f.deliver(t, "msg_rd_3", opened); r.code != http.StatusOK || !strings.Contains(r.body, "filtered") {
		t.Fatalf("filtered type while redis is down: %d %s, want 200 filtered", r.code, r.body)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"reason":"redis_down"`) || !strings.Contains(logs, "connection refused") {
		t.Errorf("redis_down is not logged with the probe's error:\n%s", f.logs.Tail(3))
	}

	down.Store(nil) // the probe succeeded again (or has not run yet): enqueue as usual
	if r := f.deliver(t, "msg_rd_1", sent); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
		t.Fatalf("redis back: %d %s", r.code, r.body)
	}
}

func histogramCount(t *testing.T, f *fixture) uint64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rwh_receiver_enqueue_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no enqueue histogram")
	return 0
}

// A probe that has not finished its first check is no evidence of an outage: requests go on
// to the enqueue (readiness still fails until it succeeded).
func TestProbeNotCheckedYetIsNoFailure(t *testing.T) {
	p := &redisProbe{}
	if p.failure() != nil || p.err() == nil {
		t.Fatalf("before the first check: failure %v (want nil), err %v (want not ready)", p.failure(), p.err())
	}
	outage := errors.New("redis unreachable")
	p.last.Store(&outage)
	if p.failure() == nil || p.err() == nil {
		t.Fatal("a failed check must be a failure and not ready")
	}
	var ok error
	p.last.Store(&ok)
	if p.failure() != nil || p.err() != nil {
		t.Fatal("a successful check must be neither")
	}
}
