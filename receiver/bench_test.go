package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	svix "github.com/svix/svix-webhooks/go"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/admin"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Benchmark settings: every phase is bounded in time and in requests; all traffic is loopback.
const (
	benchQueue    = "bench"
	benchPhase    = time.Second // per round; benchRounds rounds per concurrency and contender
	benchRounds   = 3
	benchMaxReqs  = 20_000 // per round: pre-signed requests available
	benchRateTime = 5 * time.Second
	benchPoolSize = 64 // the receiver's --redis-pool-size default
)

var benchConcurrency = []int{1, 8, 32, 64}

// BenchmarkReceiver compares, in one process against one private redis-server:
// (a) a bare asynq.Client.Enqueue loop with the receiver's task options and a 1 KB payload,
// (b) the receiver (NewHandler with metrics and logging, admin.NewServer) over loopback HTTP,
// (c) a minimal handler (net/http + svix Verify + JSON type + Enqueue, nothing else),
// at concurrency 1, 8, 32, 64; then (b)'s latency at fixed rates with vegeta.
// Run with `make bench-receiver`; it prints a table and runs once whatever b.N is.
func BenchmarkReceiver(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once per process (use -benchtime 1x)")
	}
	r, err := rwhtest.NewRedis()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	rdb := r.Client(b)
	conn := asynq.RedisClientOpt{Addr: r.Addr(), PoolSize: benchPoolSize}
	client := asynq.NewClient(conn)
	defer func() { _ = client.Close() }()

	body := benchBody()
	wh, err := svix.NewWebhook(vectorSecret)
	if err != nil {
		b.Fatal(err)
	}
	secrets := StaticSecrets{wh}
	full, err := NewHandler(Options{
		Client: client, Secrets: secrets, Queue: benchQueue, Webhook: "bench/hook",
		Metrics: NewMetrics(prometheus.NewRegistry(), "bench/hook"),
		// As the command wires it: the in-flight bound (default) and the probe's verdict per request.
		RedisHealth: (&redisProbe{}).failure,
		// The production default level: rejections are logged, accepted requests are not.
		Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		b.Fatal(err)
	}
	fullURL := benchServe(b, full)
	minURL := benchServe(b, minimalHandler(client, wh, benchQueue))

	flush := func() {
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("\nBenchmarkReceiver: GOMAXPROCS=%d, NumCPU=%d, redis-server on the same cores; %d alternating rounds of %s per contender and concurrency, 1 KB body, Redis pool %d\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), benchRounds, benchPhase, benchPoolSize)
	fmt.Printf("%-4s | %-22s | %-30s | %-30s | %8s | %8s\n", "c", "(a) bare Enqueue /s", "(b) receiver /s  p50 / p99", "(c) minimal /s  p50 / p99", "(b)/(a)", "(b)/(c)")
	fmt.Println(strings.Repeat("-", 118))
	var failures []string
	for _, c := range benchConcurrency {
		// Rounds alternate a, b, c so that load from other processes hits all three alike.
		a, recv, minimal := &benchStats{name: "bare"}, &benchStats{name: "receiver"}, &benchStats{name: "minimal"}
		for range benchRounds {
			flush()
			a.merge(benchBareEnqueue(client, body, c))
			flush()
			recv.merge(benchHTTP(fullURL, body, c))
			flush()
			minimal.merge(benchHTTP(minURL, body, c))
		}
		fmt.Printf("%-4d | %10.0f p99 %6s | %10.0f %8s / %8s | %10.0f %8s / %8s | %8.2f | %8.2f\n", c,
			a.rate(), ms(a.p(0.99)), recv.rate(), ms(recv.p(0.50)), ms(recv.p(0.99)),
			minimal.rate(), ms(minimal.p(0.50)), ms(minimal.p(0.99)), recv.rate()/a.rate(), recv.rate()/minimal.rate())
		for _, s := range []*benchStats{a, recv, minimal} {
			if s.failed > 0 {
				failures = append(failures, fmt.Sprintf("c=%d %s: %d failed (%s)", c, s.name, s.failed, s.firstErr))
			}
		}
	}
	fmt.Println()
	fmt.Printf("(b) receiver at a fixed rate with vegeta (%s each):\n", benchRateTime)
	fmt.Printf("%-10s | %8s | %8s | %8s | %8s | %8s\n", "rate/s", "requests", "success", "p50", "p99", "max")
	for _, rate := range []int{500, 2000} {
		flush()
		m := benchVegeta(fullURL, body, rate)
		fmt.Printf("%-10d | %8d | %7.2f%% | %8s | %8s | %8s\n", rate, m.Requests, 100*m.Success,
			ms(m.Latencies.P50), ms(m.Latencies.P99), ms(m.Latencies.Max))
		if m.Success < 1 {
			failures = append(failures, fmt.Sprintf("vegeta %d/s: success %.4f, errors %v", rate, m.Success, m.Errors))
		}
	}
	fmt.Println()
	if len(failures) > 0 {
		b.Errorf("failed requests: %s", strings.Join(failures, "; "))
	}
}

// benchBody is a Resend-like email.delivered event of about 1 KB.
func benchBody() []byte {
	pad := strings.Repeat("x", 800)
	return fmt.Appendf(nil, `{"type":"email.delivered","created_at":"2026-11-28T15:00:00.000Z","data":{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example","pad":%q}}`, pad)
}

func benchServe(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := admin.NewServer(h)
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// minimalHandler is the yardstick: what any receiver has to do, nothing more.
func minimalHandler(client *asynq.Client, wh *svix.Webhook, queue string) http.HandlerFunc {
	opts := []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(DefaultMaxAttempts - 1), asynq.Timeout(DefaultMaxDuration), asynq.Retention(DefaultDedupWindow)}
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, DefaultMaxBodyBytes))
		if err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(body, &ev) != nil || ev.Type == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get("svix-id")
		t := asynq.NewTaskWithHeaders(task.TypeName(ev.Type), body, map[string]string{
			task.HeaderSvixID: id, task.HeaderSvixTimestamp: r.Header.Get("svix-timestamp"),
			task.HeaderSvixSignature: r.Header.Get("svix-signature"), task.HeaderReceivedAt: time.Now().UTC().Format(time.RFC3339),
			task.HeaderWebhook: "bench/hook",
		})
		if _, err := client.EnqueueContext(r.Context(), t, append(opts[:len(opts):len(opts)], asynq.TaskID(id))...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

type benchStats struct {
	name      string
	n, failed int
	elapsed   time.Duration
	latencies []time.Duration
	firstErr  string
}

// merge adds the round o to s.
func (s *benchStats) merge(o *benchStats) {
	s.n += o.n
	s.failed += o.failed
	s.elapsed += o.elapsed
	s.latencies = append(s.latencies, o.latencies...)
	slices.Sort(s.latencies)
	s.firstErr = cmpOr(s.firstErr, o.firstErr)
}

func (s *benchStats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

func (s *benchStats) p(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	return s.latencies[min(len(s.latencies)-1, int(q*float64(len(s.latencies))))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) + "ms"
}

// closedLoop runs c workers calling op(i) with unique i until the phase time or the request
// budget is used up, and collects latencies.
func closedLoop(name string, c int, op func(i int) error) *benchStats {
	var next atomic.Int64
	var mu sync.Mutex
	s := &benchStats{name: name}
	deadline := time.Now().Add(benchPhase)
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, benchMaxReqs/c)
			failed, firstErr := 0, ""
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= benchMaxReqs {
					break
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			s.latencies = append(s.latencies, lat...)
			s.failed += failed
			s.firstErr = cmpOr(s.firstErr, firstErr)
			mu.Unlock()
		})
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	s.n = len(s.latencies)
	slices.Sort(s.latencies)
	return s
}

func benchBareEnqueue(client *asynq.Client, body []byte, c int) *benchStats {
	opts := []asynq.Option{asynq.Queue(benchQueue), asynq.MaxRetry(DefaultMaxAttempts - 1), asynq.Timeout(DefaultMaxDuration), asynq.Retention(DefaultDedupWindow)}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return closedLoop("bare", c, func(i int) error {
		id := "msg_bare_" + strconv.Itoa(i)
		t := asynq.NewTaskWithHeaders("resend:email.delivered", body, map[string]string{
			task.HeaderSvixID: id, task.HeaderSvixTimestamp: ts, task.HeaderSvixSignature: "v1,x",
			task.HeaderReceivedAt: time.Now().UTC().Format(time.RFC3339), task.HeaderWebhook: "bench/hook",
		})
		_, err := client.Enqueue(t, append(opts[:len(opts):len(opts)], asynq.TaskID(id))...)
		return err
	})
}

// signedHeaders pre-signs n requests with unique svix-ids, so signing costs nothing during a phase.
func signedHeaders(prefix string, body []byte, n int) []http.Header {
	wh, _ := svix.NewWebhook(vectorSecret)
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	out := make([]http.Header, n)
	for i := range out {
		id := prefix + strconv.Itoa(i)
		sig, _ := wh.Sign(id, now, body)
		out[i] = http.Header{"Svix-Id": {id}, "Svix-Timestamp": {ts}, "Svix-Signature": {sig}, "Content-Type": {"application/json"}}
	}
	return out
}

var benchPrefix atomic.Int64

func benchHTTP(url string, body []byte, c int) *benchStats {
	headers := signedHeaders(fmt.Sprintf("msg_http%d_", benchPrefix.Add(1)), body, benchMaxReqs)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	defer hc.CloseIdleConnections()
	return closedLoop("http", c, func(i int) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header = headers[i]
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

func benchVegeta(url string, body []byte, rate int) vegeta.Metrics {
	n := rate*int(benchRateTime/time.Second) + rate // headroom for the pacer
	headers := signedHeaders(fmt.Sprintf("msg_rate%d_", benchPrefix.Add(1)), body, n)
	var next atomic.Int64
	targeter := func(t *vegeta.Target) error {
		i := int(next.Add(1)) - 1
		if i >= len(headers) {
			return vegeta.ErrNoTargets
		}
		t.Method, t.URL, t.Body, t.Header = http.MethodPost, url, body, headers[i]
		return nil
	}
	attacker := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Workers(16), vegeta.MaxWorkers(512), vegeta.Timeout(10*time.Second))
	var m vegeta.Metrics
	for res := range attacker.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, benchRateTime, "receiver") {
		m.Add(res)
	}
	m.Close()
	return m
}
