package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCircuitStateMachine(t *testing.T) {
	t.Parallel()
	cfg := BreakerConfig{Threshold: 3, ProbeInterval: time.Second, MaxProbeInterval: 3 * time.Second, MaxHold: time.Minute}
	c := &circuit{cfg: cfg}
	t0 := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// Below the threshold nothing is held; an answer resets the count.
	for i := range 2 {
		if c.down(at(0), "connection refused", 0, false) || c.admit(at(0)) != admitDeliver {
			t.Fatalf("failure %d opened the breaker early", i+1)
		}
	}
	c.answered(false)
	for i := range 2 {
		c.down(at(0), "connection refused", 0, false)
		_ = i
	}
	if !c.down(at(0), "connection refused", 0, false) {
		t.Fatal("third consecutive failure after a reset did not open the breaker")
	}
	if !c.holding(at(0)) || c.admit(at(500*time.Millisecond)) != admitHold {
		t.Fatal("open breaker does not hold before the probe interval")
	}
	// One probe at a time once due.
	if c.admit(at(time.Second)) != admitProbe || c.admit(at(time.Second)) != admitHold {
		t.Fatal("want exactly one prober at the probe time")
	}
	// A failed probe doubles the interval (capped), and consumes nothing: still holding.
	c.down(at(time.Second), "connection refused", 0, true)
	if c.nextProbe != at(3*time.Second) || !c.holding(at(time.Second)) {
		t.Fatalf("after a failed probe: next probe %s, want +2s", c.nextProbe.Sub(at(time.Second)))
	}
	c.admit(at(3 * time.Second))
	c.down(at(3*time.Second), "connection refused", 0, true)
	if c.nextProbe != at(6*time.Second) {
		t.Fatalf("interval not capped at 3s: next probe %s after", c.nextProbe.Sub(at(3*time.Second)))
	}
	// Retry-After sets the next probe, capped at MaxProbeInterval.
	c.admit(at(6 * time.Second))
	c.down(at(6*time.Second), "http 503", 2*time.Second, true)
	if c.nextProbe != at(8*time.Second) || c.class != "http 503" {
		t.Fatalf("Retry-After 2s: next probe at +%s, class %q", c.nextProbe.Sub(at(6*time.Second)), c.class)
	}
	c.down(at(7*time.Second), "http 429", time.Hour, false) // an in-flight failure with a long Retry-After
	if c.nextProbe != at(10*time.Second) {
		t.Fatalf("long Retry-After not capped: next probe at +%s", c.nextProbe.Sub(at(7*time.Second)))
	}
	// An abandoned probe lets another one go.
	c.admit(at(10 * time.Second))
	c.abandon()
	if c.admit(at(10*time.Second)) != admitProbe {
		t.Fatal("after an abandoned probe nobody may probe")
	}
	// A probe the sink answers closes the breaker.
	if !c.answered(true) || c.holding(at(10*time.Second)) || c.admit(at(10*time.Second)) != admitDeliver {
		t.Fatal("answered probe did not close the breaker")
	}
	// Horizon: open longer than MaxHold → deliveries go through, failures no longer held.
	for range 3 {
		c.down(at(20*time.Second), "timeout", 0, false)
	}
	if !c.holding(at(time.Minute)) || c.holding(at(20*time.Second+time.Minute)) || c.admit(at(20*time.Second+time.Minute)) != admitDeliver {
		t.Fatal("horizon not applied")
	}
	if c.wakeAt() != at(21*time.Second) {
		t.Errorf("wakeAt = %s, want the first probe", c.wakeAt().Sub(t0))
	}
}

func TestBreakerHappyPathAndTransitions(t *testing.T) {
	t.Parallel()
	var events []breakerEvent
	b := newBreaker(BreakerConfig{Threshold: 2, ProbeInterval: time.Hour, MaxProbeInterval: time.Hour, MaxHold: time.Hour},
		func(ev breakerEvent) { events = append(events, ev) })
	down := &unavailableError{err: errors.New("x"), class: "connection refused"}
	if b.admit() != admitDeliver || b.done(nil, false) {
		t.Fatal("closed breaker held a success")
	}
	if b.done(down, false) || b.done(errors.New("sink answered 500"), false) || b.done(down, false) {
		t.Fatal("non-consecutive failures opened the breaker")
	}
	if !b.done(down, false) {
		t.Fatal("threshold reached but the failing event is not held")
	}
	if len(events) != 1 || !events[0].open || events[0].class != "connection refused" || b.admit() != admitHold {
		t.Fatalf("events %+v", events)
	}
	if b.done(context.Canceled, false) != true {
		t.Error("a cut attempt while open should be held (no verdict)")
	}
	if b.done(nil, false) || b.admit() != admitDeliver || len(events) != 2 || events[1].open {
		t.Fatalf("a success did not close the breaker: %+v", events)
	}
}

func TestClassifyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		kind verdictKind
	}{
		{nil, verdictAnswered},
		{errors.New("sink answered 500"), verdictAnswered},
		{Permanent(errors.New("400")), verdictAnswered},
		{Unavailable(errors.New("db down")), verdictDown},
		{fmt.Errorf("wrapped: %w", UnavailableFor(errors.New("rate limited"), time.Second)), verdictDown},
		{context.Canceled, verdictNone},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), verdictNone},
	} {
		if got := classify(tc.err); got.kind != tc.kind {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got.kind, tc.kind)
		}
	}
	if v := classify(UnavailableFor(errors.New("x"), 3*time.Second)); v.retryAfter != 3*time.Second || v.class != "unavailable" {
		t.Errorf("UnavailableFor verdict = %+v", v)
	}
	if Unavailable(nil) != nil {
		t.Error("Unavailable(nil) != nil")
	}
}

// Real transport failures of the sink forwarder: each is Unavailable with its class, and no
// error shows the sink URL's path or query.
func TestSinkTransportFailures(t *testing.T) {
	t.Parallel()
	closed, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	reset := listen(t, func(c net.Conn) { _ = c.Close() })
	silent := listen(t, func(c net.Conn) { buf := make([]byte, 1); _, _ = c.Read(buf); <-t.Context().Done(); _ = c.Close() })
	for _, tc := range []struct{ addr, class string }{
		{closed, "connection refused"},
		{reset, "connection reset"},
		{silent, "timeout"},
	} {
		s, err := NewSink(SinkConfig{URL: "http://" + tc.addr + "/hooks/s3cret?token=t0ken", Timeout: 300 * time.Millisecond}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = s.HandleEvent(context.Background(), &Event{ID: "msg_1", Body: []byte("{}")})
		v := classify(err)
		if v.kind != verdictDown || v.class != tc.class {
			t.Errorf("%s: verdict %+v (%v), want down/%s", tc.class, v, err, tc.class)
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0ken") || !strings.Contains(err.Error(), tc.addr+"/…") {
			t.Errorf("%s: error shows the URL path or query, or not the host: %v", tc.class, err)
		}
		s.Close()
	}
	if err := (SinkConfig{URL: "ftp://x/secret?token=1", Timeout: time.Second}).Validate(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Validate error shows the path: %v", err)
	}
}

// listen serves raw TCP connections with fn on a loopback port until the test ends.
func listen(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go fn(c)
		}
	}()
	return l.Addr().String()
}
