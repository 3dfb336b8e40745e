package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/dlq"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Acceptance of issue 9, worker side: a receiver and a worker started with the arguments the
// operator renders, on a real Redis, with the sink refusing connections for more than a minute
// while 12,000 signed events arrive over HTTP.
//
//	A: the outage is shorter than the breaker's horizon (maxHold): every acknowledged event
//	   reaches the sink once it is back, with no manual step and no dead letter.
//	B: the horizon is shorter than the outage: every event becomes a dead letter, the dlq
//	   command lists all of them, replays them with --all, and all reach the sink.
//
// Both run in parallel (about 1.5–2 minutes of wall time) and log their figures.
func TestAcceptanceSinkOutage(t *testing.T) {
	const events = 12_000
	const outage = 60 * time.Second
	for _, sc := range []struct {
		name    string
		maxHold time.Duration
	}{
		{"A_outage_within_horizon", 10 * time.Minute},
		{"B_outage_beyond_horizon", 10 * time.Second},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runOutage(t, sc.maxHold, events, outage, sc.maxHold < outage)
		})
	}
}

func runOutage(t *testing.T, maxHold time.Duration, events int, outage time.Duration, wantDead bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := testutil.StartRedis(t)
	sink := newFlakySink(t)
	rw := &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "hooks", Namespace: "acceptance"},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: "signing"},
			Queue:         v1alpha1.QueueSpec{Redis: v1alpha1.RedisSpec{URL: r.URL()}},
			Worker: &v1alpha1.WorkerSpec{
				Sink: &v1alpha1.SinkSpec{URL: "http://" + sink.addr + "/hooks/resend"},
				CircuitBreaker: v1alpha1.CircuitBreakerSpec{ProbeInterval: &metav1.Duration{Duration: time.Second},
					MaxProbeInterval: &metav1.Duration{Duration: 3 * time.Second}, MaxHold: &metav1.Duration{Duration: maxHold}},
			},
		},
	}
	rw.Default()
	queue := rw.QueueName()

	comps := newComponents(t)
	url, _ := comps.receiver(rw)
	comps.worker(rw)

	outageStart := time.Now()
	sent, acked := sendSigned(t, url, e2eSecret, events)
	rdb := r.Client(t)
	store := queuestore.New(rdb, queue)
	if wantDead { // B: wait until the backlog is all dead letters before the sink returns
		testutil.Eventually(t, 3*time.Minute, "every event dead-lettered", func() error {
			return expectFigures(ctx, store, func(f queuestore.Figures) bool {
				return f.Dead == int64(acked) && f.Pending+f.Active+f.Retry+f.Scheduled == 0
			})
		})
	}
	if left := outage - time.Since(outageStart); left > 0 {
		waitFor(left)
	}
	down := time.Since(outageStart)
	midway, _ := store.Figures(ctx)
	sink.up(t)
	back := time.Now()

	var listed, replayed int
	if wantDead {
		listed = dlqList(t, r.URL(), queue)
		out := runDLQ(t, "replay", "--redis-url", r.URL(), "--queue", queue, "--all")
		if _, err := fmt.Sscanf(out, "replayed: %d", &replayed); err != nil {
			t.Fatalf("dlq replay output %q: %v", out, err)
		}
	}
	testutil.EventuallyTrue(t, 3*time.Minute, "every acknowledged event delivered", func() bool { return sink.distinct() >= acked })
	drained := time.Since(back)
	final, err := store.Figures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	delivered := sink.distinct()
	lost := acked - delivered
	t.Logf("sink down %s (connection refused), breaker max hold %s: sent %d, acknowledged %d, dead-lettered during the outage %d "+
		"(listed by dlq %d, replayed %d), delivered %d distinct webhook-ids in %s after the sink came back (%d POSTs), lost %d, dead letters left %d",
		down.Round(time.Second), maxHold, sent, acked, midway.Dead, listed, replayed, delivered, drained.Round(100*time.Millisecond),
		sink.posts(), lost, final.Dead)
	if acked != events || sent != events {
		t.Errorf("sent %d, acknowledged %d; want %d each", sent, acked, events)
	}
	if lost != 0 || final.Dead != 0 {
		t.Errorf("lost %d events, %d dead letters left", lost, final.Dead)
	}
	if wantDead && (midway.Dead < int64(events) || listed != acked || replayed != acked) {
		t.Errorf("scenario B: %d dead letters, %d listed, %d replayed; want %d each", midway.Dead, listed, replayed, acked)
	}
	if !wantDead && midway.Dead != 0 {
		t.Errorf("scenario A: %d dead letters during an outage within the horizon", midway.Dead)
	}
	if keys := rdb.Keys(ctx, "rwh:{"+queue+"}:held*").Val(); len(keys) != 0 {
		t.Errorf("parked entries left: %v", keys)
	}
}

// waitFor lets the outage run its set length: the length of the outage is what the test is
// about, not a synchronisation.
func waitFor(d time.Duration) { <-time.After(d) }

func expectFigures(ctx context.Context, s *queuestore.Store, ok func(queuestore.Figures) bool) error {
	f, err := s.Figures(ctx)
	if err == nil && !ok(f) {
		err = fmt.Errorf("figures %+v", f)
	}
	return err
}

// sendSigned posts n signed Resend events at a bounded rate (the outage must last longer than
// the sending), retrying a non-200 answer a few times like Resend would. It returns how many it
// sent and how many the receiver acknowledged.
func sendSigned(t *testing.T, url, secret string, n int) (sent, acked int) {
	t.Helper()
	post := newSignedPoster(t, url, secret)
	limiter := rate.NewLimiter(400, 8)
	var ok atomic.Int64
	err := testutil.ForEachParallel(n, 8, func(i int) error {
		id := fmt.Sprintf("msg_acc_%06d", i)
		for range 5 {
			if err := limiter.Wait(context.Background()); err != nil {
				return err
			}
			if post(id) == http.StatusOK {
				ok.Add(1)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, int(ok.Load())
}

func runDLQ(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := dlq.Command.Run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("dlq %s: %v\n%s", args[0], err, out.String())
	}
	return out.String()
}

func dlqList(t *testing.T, redisURL, queue string) int {
	t.Helper()
	var entries []dlq.Entry
	out := runDLQ(t, "list", "--redis-url", redisURL, "--queue", queue, "--limit", "0", "-o", "json")
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("dlq list -o json: %v", err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.ID] = true
		if !strings.Contains(e.LastError, "connection refused") || strings.Contains(e.LastError, "/hooks/resend") {
			t.Fatalf("dead letter %s: last error %q", e.ID, e.LastError)
		}
	}
	return len(seen)
}

// flakySink is an HTTP sink on a fixed loopback port that is down (nothing listens: connection
// refused) until up is called; it counts POSTs and distinct webhook-ids.
type flakySink struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
	srv  *http.Server
}

func newFlakySink(t *testing.T) *flakySink {
	s := &flakySink{addr: freeAddr(t), seen: map[string]int{}}
	t.Cleanup(func() {
		if s.srv != nil {
			_ = s.srv.Close()
		}
	})
	return s
}

func (s *flakySink) up(t *testing.T) {
	t.Helper()
	var l net.Listener
	testutil.Eventually(t, 10*time.Second, "sink port free again", func() (err error) {
		l, err = net.Listen("tcp", s.addr)
		return err
	})
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.seen[r.Header.Get("webhook-id")]++
		s.mu.Unlock()
	})}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("sink: %v", err)
		}
	}()
}

func (s *flakySink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *flakySink) posts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.seen {
		n += c
	}
	return n
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

func get(url string) int {
	resp, err := http.Get(url) //nolint:noctx // loopback probe in a test
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
