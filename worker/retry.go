package worker

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// RetryPolicy is the retry schedule of a ResendWebhook (docs/design.md): after failed attempt n
// (1-based) the next attempt waits min(MaxBackoff, R·MinBackoff·Factor^(n−1)), where R is drawn
// from [1, 2) when Randomize is set and is 1 otherwise. MaxAttempts counts the first attempt.
type RetryPolicy struct {
	MaxAttempts int
	Factor      int
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	Randomize   bool
}

// DefaultRetryPolicy is the CRD's default: 3 attempts, factor 2, 1s…10s, randomized.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 3, Factor: 2, MinBackoff: time.Second, MaxBackoff: 10 * time.Second, Randomize: true}

// Validate reports settings the formula cannot use.
func (p RetryPolicy) Validate() error {
	var errs []error
	if p.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts %d: must be at least 1", p.MaxAttempts))
	}
	if p.Factor < 1 {
		errs = append(errs, fmt.Errorf("backoff factor %d: must be an integer of at least 1", p.Factor))
	}
	if p.MinBackoff <= 0 {
		errs = append(errs, fmt.Errorf("min backoff %s: must be positive", p.MinBackoff))
	}
	if p.MaxBackoff < p.MinBackoff {
		errs = append(errs, fmt.Errorf("min backoff %s is greater than max backoff %s", p.MinBackoff, p.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Delay is the wait after failed attempt n (1-based). rnd in [0, 1) picks R = 1 + rnd when the
// policy is randomized; it is ignored otherwise. The result never exceeds MaxBackoff, however
// large n is (the float power turns into +Inf rather than wrapping around).
func (p RetryPolicy) Delay(n int, rnd float64) time.Duration {
	n = max(n, 1)
	r := 1.0
	if p.Randomize {
		r = min(1+max(rnd, 0), math.Nextafter(2, 0)) // R stays below 2 even for rnd ≥ 1
	}
	d := r * float64(p.MinBackoff) * math.Pow(float64(max(p.Factor, 1)), float64(n-1))
	if math.IsNaN(d) || d >= float64(p.MaxBackoff) {
		return p.MaxBackoff
	}
	return time.Duration(d)
}

// RetryDelayFunc adapts the policy to asynq. Asynq passes how often the task was retried so far
// (0-based), so the attempt that just failed is n = retried+1. Asynq stores the due time in whole
// seconds, rounded down, which would let a retry run up to a second early; the returned delay is
// stretched so the due time lands on the next whole second at or after now+Delay.
func (p RetryPolicy) RetryDelayFunc() asynq.RetryDelayFunc {
	return func(retried int, _ error, _ *asynq.Task) time.Duration {
		return delayToWholeSecond(time.Now(), p.Delay(retried+1, rand.Float64()))
	}
}

// delayToWholeSecond returns the delay from now to the first whole Unix second that is not
// earlier than now+d.
func delayToWholeSecond(now time.Time, d time.Duration) time.Duration {
	due := now.Add(d)
	up := due.Truncate(time.Second)
	if up.Before(due) {
		up = up.Add(time.Second)
	}
	return up.Sub(now)
}
