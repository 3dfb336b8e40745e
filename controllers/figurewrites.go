package controllers

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
)

// figureWrites bounds the status writes that carry nothing but new queue figures (a busy
// queue's figures change on every read): at most one per webhook per interval, and no more
// than the budget allows across all webhooks (a token bucket). Writes for anything else are not
// counted against it: conditions still change at once.
type figureWrites struct {
	interval time.Duration
	budget   *rate.Limiter
	now      func() time.Time
	mu       sync.Mutex
	last     map[types.NamespacedName]time.Time // the webhook's last status write
}

// newFigureWrites allows perSecond figure-only writes per second in the long run, in bursts of
// at most max(1, perSecond).
func newFigureWrites(interval time.Duration, perSecond float64) *figureWrites {
	return &figureWrites{
		interval: interval,
		budget:   rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond))),
		now:      time.Now,
		last:     map[types.NamespacedName]time.Time{},
	}
}

// allow reports whether webhook may write its figures now, taking a token when it may.
func (f *figureWrites) allow(webhook types.NamespacedName) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if last, ok := f.last[webhook]; ok && now.Sub(last) < f.interval {
		return false
	}
	return f.budget.AllowN(now, 1)
}

// wrote records a status write of webhook (which carried its current figures).
func (f *figureWrites) wrote(webhook types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last[webhook] = f.now()
}

func (f *figureWrites) forget(webhook types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.last, webhook)
}
