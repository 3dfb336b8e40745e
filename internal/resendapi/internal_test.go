package resendapi

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0.5": 500 * time.Millisecond, "": time.Second, "junk": time.Second, "-4": time.Second,
		"999999": maxRetryAfter, now.Add(7 * time.Second).Format(http.TimeFormat): 7 * time.Second,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
	if _, err := New(Options{BaseURL: "ftp://x"}); err == nil {
		t.Error("a non-http base URL must be refused")
	}
}
