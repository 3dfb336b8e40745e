package receiver

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRejectionLogsAreRateLimited: a flood of forgeries is counted in full but logged at a
// bounded rate per reason, and the next line logged says how many it stands for. Accepted
// requests and other reasons are not held back by it.
func TestRejectionLogsAreRateLimited(t *testing.T) {
	var clock atomic.Int64 // the handler's clock, moved by hand
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	f := newFixture(t, func(o *Options) { o.Now = now })
	body := event("email.sent")
	forge := func(id string) {
		if r := f.post(t, signed(t, otherSecret, id, now(), body), body); r.code != http.StatusUnauthorized {
			t.Fatalf("forgery: %d %s", r.code, r.body)
		}
	}

	const flood = rejectLogBurst + 25
	for i := range flood {
		forge("msg_forged_" + strconv.Itoa(i))
	}
	if got := f.count("401", "signature"); got != flood {
		t.Fatalf("requests_total{401,signature} = %v, want every one of %d", got, flood)
	}
	if got := countLines(f, `"reason":"signature"`); got != rejectLogBurst {
		t.Fatalf("%d log lines for %d forgeries, want the burst of %d", got, flood, rejectLogBurst)
	}
	if got := metricValue(f.metrics.suppressed); got != flood-rejectLogBurst {
		t.Fatalf("log_lines_suppressed_total = %v, want %d", got, flood-rejectLogBurst)
	}

	// Another reason has its own budget; accepted requests are never held back.
	if r := do(t, http.MethodGet, f.server.URL, nil, nil); r.code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", r.code)
	}
	if got := countLines(f, `"reason":"method"`); got != 1 {
		t.Fatalf("the 405 after the flood: %d log lines, want 1", got)
	}
	for i := range rejectLogBurst + 5 {
		id := "msg_ok_" + strconv.Itoa(i)
		if r := f.post(t, signed(t, vectorSecret, id, now(), body), body); r.code != http.StatusOK {
			t.Fatalf("valid request: %d %s", r.code, r.body)
		}
	}
	if got := countLines(f, `"reason":"enqueued"`); got != rejectLogBurst+5 {
		t.Fatalf("%d log lines for %d accepted requests (debug level), want all", got, rejectLogBurst+5)
	}

	clock.Add(1) // a second later one more line is allowed, and it reports the held-back ones
	forge("msg_forged_late")
	if got := countLines(f, `"reason":"signature"`); got != rejectLogBurst+1 {
		t.Fatalf("%d signature lines after a second, want %d", got, rejectLogBurst+1)
	}
	if !strings.Contains(lastLine(f, `"reason":"signature"`), `"suppressed":25`) {
		t.Fatalf("the line after the pause does not say 25 were suppressed: %s", lastLine(f, `"reason":"signature"`))
	}
	forge("msg_forged_later") // the second's budget is spent again
	if got := countLines(f, `"reason":"signature"`); got != rejectLogBurst+1 {
		t.Fatalf("%d signature lines, want still %d", got, rejectLogBurst+1)
	}
}

func countLines(f *fixture, substr string) int {
	n := 0
	for line := range strings.Lines(f.logs.String()) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

func lastLine(f *fixture, substr string) string {
	last := ""
	for line := range strings.Lines(f.logs.String()) {
		if strings.Contains(line, substr) {
			last = line
		}
	}
	return last
}
