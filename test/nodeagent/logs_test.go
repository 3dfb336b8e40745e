package nodeagent

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// writeLog writes a log file of CRI records.
func writeLog(t *testing.T, records ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(strings.Join(records, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func closed() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func TestStreamLog(t *testing.T) {
	path := writeLog(t,
		"2026-01-01T10:00:00.5Z stdout F one",
		"2026-01-01T10:00:01Z stderr F two",
		"2026-01-01T10:00:02Z stdout P thr",
		"2026-01-01T10:00:02.1Z stdout F ee",
		"2026-01-01T10:00:03Z stdout F four",
	)
	for name, c := range map[string]struct {
		query string
		want  string
	}{
		"all":        {"", "one\ntwo\nthree\nfour\n"},
		"tail":       {"tailLines=2", "ee\nfour\n"},
		"tail 0":     {"tailLines=0", ""},
		"timestamps": {"tailLines=1&timestamps=true", "2026-01-01T10:00:03Z four\n"},
		"since":      {"sinceTime=2026-01-01T10:00:01Z", "two\nthree\nfour\n"},
		"limit":      {"limitBytes=6", "one\ntw"},
	} {
		q, _ := url.ParseQuery(c.query)
		o, err := parseLogOptions(q, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var out strings.Builder
		if err := streamLog(context.Background(), &out, func() {}, path, closed(), o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out.String() != c.want {
			t.Errorf("%s: got %q, want %q", name, out.String(), c.want)
		}
	}
}

func TestParseLogOptionsRejectsBadValues(t *testing.T) {
	for _, q := range []string{"tailLines=-1", "limitBytes=x", "sinceTime=yesterday", "sinceSeconds=1h"} {
		v, _ := url.ParseQuery(q)
		if _, err := parseLogOptions(v, time.Now()); err == nil {
			t.Errorf("%s accepted", q)
		}
	}
	v, _ := url.ParseQuery("sinceSeconds=60&follow=true&previous=true")
	now := time.Now()
	o, err := parseLogOptions(v, now)
	if err != nil || !o.follow || !o.previous || !o.since.Equal(now.Add(-time.Minute)) || o.tail != -1 {
		t.Errorf("options %+v, %v", o, err)
	}
}

// TestContainerLogFollow writes through a containerLog's streams (CRI records, long lines
// split) while a follower reads, across a rotation, until the output ends.
func TestContainerLogFollow(t *testing.T) {
	lg, err := openContainerLog(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := lg.stream("stdout"), lg.stream("stderr")
	got := &testutil.LogBuffer{}
	followed := make(chan error, 1)
	go func() {
		followed <- streamLog(context.Background(), got, func() {}, lg.path, lg.done, logOptions{follow: true, tail: -1})
	}()
	waitFor := func(what string) {
		testutil.Eventually(t, 10*time.Second, "the follower reads "+what, func() error {
			return contains(got.String(), what)
		})
	}
	long := strings.Repeat("x", maxLineBytes+10)
	_, _ = stdout.Write([]byte("fir"))
	_, _ = stdout.Write([]byte("st\n" + long + "\n"))
	waitFor(long)
	lg.mu.Lock()
	lg.size = maxLogBytes // the next record rotates the file
	lg.mu.Unlock()
	_, _ = stderr.Write([]byte("after rotation\n"))
	waitFor("after rotation")
	_, _ = stdout.Write([]byte("unterminated"))
	lg.close()
	select {
	case err := <-followed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the output ended")
	}
	if want := "first\n" + long + "\nafter rotation\nunterminated\n"; got.String() != want {
		t.Errorf("followed %q, want %q", cut(got.String()), cut(want))
	}
	b, err := os.ReadFile(lg.path + ".1")
	if err != nil || !strings.Contains(string(b), " stdout P xxx") || !strings.Contains(string(b), " stdout F xxxxxxxxxx\n") {
		t.Errorf("rotated file (%v): a long line is not split into P and F records:\n%s", err, cut(string(b)))
	}
}

func contains(s, sub string) error {
	if strings.Contains(s, sub) {
		return nil
	}
	return fmt.Errorf("%q not in %q", cut(sub), cut(s))
}

func cut(s string) string {
	if len(s) > 300 {
		return s[:150] + "…" + s[len(s)-150:]
	}
	return s
}
