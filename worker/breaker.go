package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// BreakerConfig configures the worker's circuit breaker. After Threshold consecutive
// sink-down failures (see Unavailable) the worker stops delivering: each handler holds its
// event (no attempt is counted, and with every slot holding Asynq hands out nothing more), and
// one held event is delivered as a probe after ProbeInterval, then after twice that, up to
// MaxProbeInterval (or after the sink's Retry-After, capped the same way). A probe the sink
// answers closes the breaker and every held event proceeds. Once the breaker has been open for
// MaxHold, events are delivered again under the normal retry policy, so they end as dead
// letters while the sink stays down. The zero value is on, with the defaults.
type BreakerConfig struct {
	// Disabled turns the breaker off: every failure is an attempt under the retry policy.
	Disabled bool
	// Threshold is the number of consecutive sink-down failures that opens the breaker.
	Threshold int
	// ProbeInterval is the wait before the first probe; it doubles after each failed probe.
	ProbeInterval time.Duration
	// MaxProbeInterval caps the wait between probes, and a sink's Retry-After.
	MaxProbeInterval time.Duration
	// MaxHold is the breaker's horizon: how long it holds events while the sink stays down.
	MaxHold time.Duration
}

// Defaults of BreakerConfig (the CRD's defaults).
const (
	DefaultBreakerThreshold        = 5
	DefaultBreakerProbeInterval    = 2 * time.Second
	DefaultBreakerMaxProbeInterval = time.Minute
	DefaultBreakerMaxHold          = 24 * time.Hour
)

func (c *BreakerConfig) setDefaults() {
	if c.Threshold == 0 {
		c.Threshold = DefaultBreakerThreshold
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultBreakerProbeInterval
	}
	if c.MaxProbeInterval == 0 {
		c.MaxProbeInterval = max(DefaultBreakerMaxProbeInterval, c.ProbeInterval)
	}
	if c.MaxHold == 0 {
		c.MaxHold = DefaultBreakerMaxHold
	}
}

func (c BreakerConfig) validate() error {
	if c.Disabled {
		return nil
	}
	var errs []error
	if c.Threshold < 1 {
		errs = append(errs, fmt.Errorf("breaker threshold %d: must be at least 1 (or disable the breaker)", c.Threshold))
	}
	if c.ProbeInterval <= 0 || c.MaxHold <= 0 {
		errs = append(errs, errors.New("breaker probe interval and max hold must be positive"))
	}
	if c.MaxProbeInterval < c.ProbeInterval {
		errs = append(errs, fmt.Errorf("breaker probe interval %s is greater than max probe interval %s", c.ProbeInterval, c.MaxProbeInterval))
	}
	return errors.Join(errs...)
}

// admission is what the breaker lets a handler do now.
type admission int

const (
	admitDeliver admission = iota // closed (or past the horizon): deliver normally
	admitProbe                    // open, probe due, and this caller is the prober
	admitHold                     // open: hold the event
)

// circuit is the breaker's state machine. It is pure: every method takes the time, nothing
// waits, nothing is shared; breaker adds the locking and the wake-ups.
type circuit struct {
	cfg       BreakerConfig
	open      bool
	failures  int // consecutive sink-down failures while closed
	openedAt  time.Time
	interval  time.Duration // current wait between probes
	nextProbe time.Time
	probing   bool
	class     string // error class of the last sink-down failure
	expired   bool   // the horizon passed (reported once)
}

// holding reports whether held events must keep waiting: open and within MaxHold.
func (c *circuit) holding(now time.Time) bool {
	return c.open && now.Sub(c.openedAt) < c.cfg.MaxHold
}

func (c *circuit) admit(now time.Time) admission {
	switch {
	case !c.holding(now):
		return admitDeliver
	case !c.probing && !now.Before(c.nextProbe):
		c.probing = true
		return admitProbe
	}
	return admitHold
}

// down records a sink-down failure and reports whether it opened the breaker.
func (c *circuit) down(now time.Time, class string, retryAfter time.Duration, probe bool) (opened bool) {
	c.class = class
	switch {
	case probe:
		c.probing = false
		c.interval = min(2*c.interval, c.cfg.MaxProbeInterval)
		c.nextProbe = now.Add(c.wait(retryAfter))
	case c.open:
		if retryAfter > 0 { // the sink asked for a pause: do not probe before it ends
			c.nextProbe = later(c.nextProbe, now.Add(min(retryAfter, c.cfg.MaxProbeInterval)))
		}
	default:
		c.failures++
		if c.failures < c.cfg.Threshold {
			return false
		}
		c.open, c.openedAt, c.failures, c.expired = true, now, 0, false
		c.interval = c.cfg.ProbeInterval
		c.nextProbe = now.Add(c.wait(retryAfter))
		return true
	}
	return false
}

// wait is the pause before the next probe: the sink's Retry-After when it sent one, else the
// current interval; never more than MaxProbeInterval.
func (c *circuit) wait(retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.cfg.MaxProbeInterval)
	}
	return c.interval
}

// answered records a delivery the sink answered (success, or a failure that says nothing about
// its availability) and reports whether that closed the breaker.
func (c *circuit) answered(probe bool) (closed bool) {
	if probe {
		c.probing = false
	}
	c.failures = 0
	if !c.open {
		return false
	}
	c.open, c.class = false, ""
	return true
}

// abandon ends a probe that gave no verdict (the worker is stopping): another may probe.
func (c *circuit) abandon() { c.probing = false }

// wakeAt is when a holder must look again by itself: the next probe or the horizon.
func (c *circuit) wakeAt() time.Time {
	if c.probing {
		return c.openedAt.Add(c.cfg.MaxHold)
	}
	return earlier(c.nextProbe, c.openedAt.Add(c.cfg.MaxHold))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// breakerEvent is a state change, for logs, metrics and the sink report.
type breakerEvent struct {
	open     bool
	expired  bool // open, and the horizon passed: deliveries go through again
	class    string
	since    time.Time
	nextWait time.Duration
}

// breaker is the circuit shared by a worker's handlers. Its happy path (closed, delivery
// succeeded, no failure pending) is one atomic load before and one after the delivery.
type breaker struct {
	isOpen   atomic.Bool // mirrors c.open, read without the lock
	failing  atomic.Bool // c.failures > 0: a success must reset it
	now      func() time.Time
	onChange func(breakerEvent)

	mu      sync.Mutex
	c       circuit
	changed chan struct{} // closed and replaced on every change holders wait for
}

func newBreaker(cfg BreakerConfig, onChange func(breakerEvent)) *breaker {
	return &breaker{c: circuit{cfg: cfg}, now: time.Now, onChange: onChange, changed: make(chan struct{})}
}

// admit says what a handler may do now; a caller told admitProbe must report with done.
func (b *breaker) admit() admission {
	if !b.isOpen.Load() {
		return admitDeliver
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	a := b.c.admit(now)
	if a == admitDeliver && b.c.open && !b.c.expired {
		b.c.expired = true
		b.notify(breakerEvent{open: true, expired: true, class: b.c.class, since: b.c.openedAt})
	}
	return a
}

// done records the outcome of a delivery (probe tells whether it was this caller's probe) and
// reports whether the event must be held rather than returned: a sink-down failure while the
// breaker holds costs no attempt.
func (b *breaker) done(err error, probe bool) (hold bool) {
	v := classify(err)
	if v.kind == verdictAnswered && !probe && !b.isOpen.Load() && !b.failing.Load() {
		return false // the happy path: nothing to change
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	defer func() { b.failing.Store(b.c.failures > 0) }()
	switch v.kind {
	case verdictNone:
		if probe {
			b.c.abandon()
			b.wake()
		}
		return b.c.holding(now)
	case verdictAnswered:
		if b.c.answered(probe) {
			b.isOpen.Store(false)
			b.notify(breakerEvent{class: "", since: now})
		} else if probe {
			b.wake()
		}
		return false
	}
	if b.c.down(now, v.class, v.retryAfter, probe) {
		b.isOpen.Store(true)
		b.notify(breakerEvent{open: true, class: v.class, since: now, nextWait: b.c.nextProbe.Sub(now)})
	} else if probe {
		b.wake()
	}
	return b.c.holding(now)
}

// waitState returns what a holder waits on: a channel closed at the next change and the time
// it must look again by itself.
func (b *breaker) waitState() (<-chan struct{}, time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed, b.c.wakeAt(), b.c.holding(b.now())
}

// notify reports a transition and wakes every holder. Called with mu held.
func (b *breaker) notify(ev breakerEvent) {
	b.wake()
	if b.onChange != nil {
		b.onChange(ev)
	}
}

func (b *breaker) wake() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// report is the breaker's current state for the sink report.
func (b *breaker) report() (open bool, class string, since time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c.open, b.c.class, b.c.openedAt
}

// verdict is what a delivery's outcome says about the sink.
type verdict struct {
	kind       verdictKind
	class      string
	retryAfter time.Duration
}

type verdictKind int

const (
	verdictAnswered verdictKind = iota // the sink answered (success or a per-event failure)
	verdictDown                        // the sink looks down
	verdictNone                        // no verdict: the attempt was cut short (shutdown, deadline)
)

func classify(err error) verdict {
	if err == nil {
		return verdict{kind: verdictAnswered}
	}
	if ue, ok := errors.AsType[*unavailableError](err); ok {
		return verdict{kind: verdictDown, class: ue.class, retryAfter: ue.retryAfter}
	}
	if errors.Is(err, errAttemptCut) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return verdict{kind: verdictNone}
	}
	return verdict{kind: verdictAnswered}
}

// errAttemptCut marks a delivery cut short by the worker (stopping, or the attempt's own
// deadline): it says nothing about the sink.
var errAttemptCut = errors.New("attempt cut short")

// maxRetryAfter bounds a parsed Retry-After before the breaker caps it at MaxProbeInterval.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date. Invalid, negative
// or past values give 0 (no hint).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(min(secs, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), maxRetryAfter)
	}
	return 0
}
