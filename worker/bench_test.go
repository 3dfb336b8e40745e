package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// BenchmarkWorker drains N pre-enqueued 1 KB events (enqueued as the receiver does) three ways
// on the same Redis with the same concurrency and poll intervals, alternating over rounds:
//
//	bare:  a bare asynq.Server with a no-op handler (the yardstick)
//	sdk:   our Worker with a no-op handler (routing, event decoding, metrics, retry policy)
//	sink:  our Worker forwarding every event over HTTP to a local no-op sink (the built-in worker)
//	post:  a bare asynq.Server whose handler does a minimal http POST to the same sink (what
//	       HTTP itself costs, without the worker's signing headers, metrics and routing)
//
// Each round runs the four variants back to back (order rotated per round) and computes the
// ratios sink/bare, sdk/bare and sink/post within the round, because the CPU is shared with
// whatever else runs; it reports the medians. RWH_BENCH_TASKS (default 10000) and
// RWH_BENCH_ROUNDS (default 5) change the size.
func BenchmarkWorker(b *testing.B) {
	n := envInt("RWH_BENCH_TASKS", 10000)
	rounds := envInt("RWH_BENCH_ROUNDS", 5)
	const concurrency = 10
	r := testutil.StartRedis(b)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}

	var delivered atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
	}))
	defer sink.Close()

	body := eventBody(EventEmailDelivered, 1024)
	kinds := []string{"bare", "sdk", "sink", "post"}
	tput := map[string][]float64{}   // per kind, one figure per round
	ratios := map[string][]float64{} // per ratio, computed within each round (the CPU is shared)
	for round := range b.N * rounds {
		got := map[string]float64{}
		for i := range kinds { // rotate the order so no variant always runs first or last
			kind := kinds[(i+round)%len(kinds)]
			queue := fmt.Sprintf("bench.%s.%d", kind, round)
			enqueueMany(b, opt, queue, n, body)
			var handled atomic.Int64
			count := &handled
			if kind == "sink" || kind == "post" {
				delivered.Store(0)
				count = &delivered
			}
			elapsed := drain(b, kind, opt, queue, concurrency, sink.URL, n, count, &handled)
			got[kind] = float64(n) / elapsed.Seconds()
			tput[kind] = append(tput[kind], got[kind])
			b.Logf("round %d %-4s: %d tasks in %s = %.0f tasks/s", round+1, kind, n, elapsed.Round(time.Millisecond), got[kind])
		}
		ratios["sink/bare"] = append(ratios["sink/bare"], got["sink"]/got["bare"])
		ratios["sdk/bare"] = append(ratios["sdk/bare"], got["sdk"]/got["bare"])
		ratios["sink/post"] = append(ratios["sink/post"], got["sink"]/got["post"])
	}
	for _, k := range kinds {
		b.ReportMetric(median(tput[k]), k+"_tasks/s")
	}
	for k, v := range ratios {
		b.ReportMetric(median(v), k)
	}
	fmt.Printf("BenchmarkWorker: %d tasks x 1 KB per variant, concurrency %d, median of %d rounds (ratios taken within each round):\n"+
		"  bare asynq, no-op handler      %6.0f/s\n"+
		"  worker SDK, no-op handler      %6.0f/s  sdk/bare  = %.2f  %s\n"+
		"  worker -> HTTP no-op sink      %6.0f/s  sink/bare = %.2f  %s  (goal >= 0.7)\n"+
		"  bare asynq + minimal http POST %6.0f/s  sink/post = %.2f  %s\n",
		n, concurrency, rounds, median(tput["bare"]),
		median(tput["sdk"]), median(ratios["sdk/bare"]), fmtAll(ratios["sdk/bare"]),
		median(tput["sink"]), median(ratios["sink/bare"]), fmtAll(ratios["sink/bare"]),
		median(tput["post"]), median(ratios["sink/post"]), fmtAll(ratios["sink/post"]))
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtAll(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// drain runs one kind of consumer on queue until count reaches n and returns the time it took.
func drain(b *testing.B, kind string, opt asynq.RedisConnOpt, queue string, concurrency int, sinkURL string, n int, count, handled *atomic.Int64) time.Duration {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var stop func()
	switch kind {
	case "bare", "post":
		srv := asynq.NewServer(opt, asynq.Config{
			Concurrency: concurrency, Queues: map[string]int{queue: 1},
			TaskCheckInterval: 100 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond, LogLevel: asynq.WarnLevel,
		})
		handler := func(context.Context, *asynq.Task) error { handled.Add(1); return nil }
		if kind == "post" {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
			defer client.CloseIdleConnections()
			handler = func(ctx context.Context, t *asynq.Task) error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sinkURL, bytes.NewReader(t.Payload()))
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.Body.Close()
			}
		}
		if err := srv.Start(asynq.HandlerFunc(handler)); err != nil {
			b.Fatal(err)
		}
		stop = srv.Shutdown
	default:
		w, err := New(Config{Redis: opt, Queue: queue, Concurrency: concurrency, PollInterval: 100 * time.Millisecond,
			Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if kind == "sink" {
			s, err := NewSink(SinkConfig{URL: sinkURL, Timeout: 10 * time.Second, MaxConns: concurrency}, w.Logger(), w.Registry())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w.Handle("*", s)
		} else {
			w.HandleFunc("*", func(context.Context, *Event) error { handled.Add(1); return nil })
		}
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		stop = func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for count.Load() < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("%s: only %d of %d tasks processed in 10 minutes", kind, count.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stop()
	return elapsed
}

// enqueueMany enqueues n events with the receiver's options, 16 at a time.
func enqueueMany(b *testing.B, opt asynq.RedisConnOpt, queue string, n int, body []byte) {
	b.Helper()
	c := asynq.NewClient(opt)
	defer func() { _ = c.Close() }()
	err := testutil.ForEachParallel(n, 16, func(i int) error {
		id := queue + "-" + strconv.Itoa(i+1)
		_, err := c.Enqueue(newReceiverTask(EventEmailDelivered, id, body), asynq.Queue(queue), asynq.TaskID(id),
			asynq.MaxRetry(2), asynq.Timeout(time.Minute), asynq.Retention(24*time.Hour))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkSinkPost is one POST of a 1 KB event to a local no-op sink, by the Sink (with and
// without a signing secret) and by a minimal http.Client.Do, for profiles and allocation
// counts without asynq and Redis around them:
//
//	go test -run '^$' -bench BenchmarkSinkPost -benchmem -cpuprofile cpu.out ./worker/
func BenchmarkSinkPost(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	secret := filepath.Join(b.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), 0o600); err != nil {
		b.Fatal(err)
	}
	ev := &Event{ID: "msg_bench", Type: EventEmailDelivered, Body: eventBody(EventEmailDelivered, 1024)}
	const conns = 16
	for _, tc := range []struct{ name, secret string }{{"sink", ""}, {"sink-signed", secret}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewSink(SinkConfig{URL: srv.URL + "/hook?token=x", Timeout: 10 * time.Second, SecretFile: tc.secret, MaxConns: conns}, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			b.SetParallelism(conns / 2)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.HandleEvent(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("post", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
		defer client.CloseIdleConnections()
		b.ReportAllocs()
		b.SetParallelism(conns / 2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/hook?token=x", bytes.NewReader(ev.Body))
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	})
}

// BenchmarkProcessTask is the worker's own work around one event (routing, the event, the
// breaker, metrics) with a no-op handler, without asynq's dequeue and completion around it:
//
//	go test -run '^$' -bench BenchmarkProcessTask -benchmem -cpuprofile cpu.out ./worker/
func BenchmarkProcessTask(b *testing.B) {
	w, err := New(Config{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	w.HandleFunc("*", func(context.Context, *Event) error { return nil })
	t := newReceiverTask(EventEmailDelivered, "msg_bench", eventBody(EventEmailDelivered, 1024))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // as asynq gives it
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.processTask(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
}
