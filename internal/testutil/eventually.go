package testutil

import (
	"errors"
	"testing"
	"time"
)

// pollInterval is how often Eventually re-checks: short enough for fast tests, long enough
// not to spin a loaded CPU.
const pollInterval = 25 * time.Millisecond

// Eventually calls check until it returns nil, and fails the test with what and check's last
// error when timeout passes first. It is the one polling loop tests use instead of sleeps.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(pollInterval) // poll interval, not synchronisation
	}
}

// EventuallyTrue is Eventually for a condition with no error to report.
func EventuallyTrue(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("condition still false")
	})
}
