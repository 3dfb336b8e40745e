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
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
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
	benchRounds   = 5
	benchMaxReqs  = 20_000          // per round: pre-signed requests available
	benchRateTime = 2 * time.Second // per round at a fixed rate
	benchPoolSize = 64              // the receiver's --redis-pool-size default
)

var (
	benchConcurrency = []int{1, 8, 32, 64}
	benchRates       = []int{1000, 2000}
	// benchProcessLoad is the concurrency of the phase that measures the receiver binary's
	// throughput and peak RSS: the table's highest, and four times that.
	benchProcessLoad = []int{64, 256}
)

// BenchmarkReceiver compares, in one process against one private redis-server:
// (a) a bare asynq.Client.Enqueue loop with the receiver's task options and a 1 KB payload,
// (b) the receiver (NewHandler with metrics and logging, admin.NewServer) over loopback HTTP,
// wired as the command wires it, enqueue batching on (the default),
// (b') the same with batching off (--enqueue-batching=false),
// (c) a minimal handler (net/http + svix Verify + JSON type + Enqueue, nothing else),
// at concurrency 1, 8, 32, 64, in alternating rounds; ratios are taken within each round and
// reported as median [min–max]. Then (b), (b') and (c) at fixed rates with vegeta, and finally
// the receiver binary as a process of its own at high concurrency: throughput and peak RSS.
// Run with `make bench-receiver`; it prints tables and runs once whatever b.N is.
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
	// (b) as the command wires it: its own pool, batching on; (b') the same with batching off.
	batched := redis.NewClient(&redis.Options{Addr: r.Addr(), PoolSize: benchPoolSize})
	defer func() { _ = batched.Close() }()
	batchedMetrics := NewMetrics(prometheus.NewRegistry(), "bench/hook")
	enqueuer, err := NewEnqueuer(batched, EnqueuerOptions{Batch: true, Metrics: batchedMetrics})
	if err != nil {
		b.Fatal(err)
	}
	contenders := []struct{ name, url string }{
		{"(b) batched", benchReceiver(b, asynq.NewClientFromRedisClient(batched), enqueuer, batchedMetrics)},
		{"(b') unbatched", benchReceiver(b, client, nil, NewMetrics(prometheus.NewRegistry(), "bench/hook"))},
		{"(c) minimal", benchServe(b, minimalHandler(client, mustWebhook(b), benchQueue))},
	}

	flush := func() {
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("\nBenchmarkReceiver: GOMAXPROCS=%d, NumCPU=%d, load generator and redis-server on the same cores; %d alternating rounds of %s per contender and concurrency, 1 KB body, Redis pool %d\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), benchRounds, benchPhase, benchPoolSize)
	fmt.Println("(a) bare asynq Enqueue loop; (b) receiver, batching on (default); (b') receiver, --enqueue-batching=false; (c) minimal handler.")
	fmt.Println("Rates: median of the rounds; latencies: all rounds; ratios: median [min-max] of the per-round ratios; batch: enqueue scripts per pipeline in (b).")
	fmt.Printf("%-3s | %-8s | %-26s | %-26s | %-26s | %-16s | %-16s | %-16s | %5s\n", "c", "(a) /s",
		"(b) /s   p50 / p99", "(b') /s   p50 / p99", "(c) /s   p50 / p99", "(b)/(c)", "(b')/(c)", "(b)/(b')", "batch")
	fmt.Println(strings.Repeat("-", 165))
	var failures []string
	for _, c := range benchConcurrency {
		bare := &benchStats{name: "(a) bare"}
		stats := make([]*benchStats, len(contenders))
		for i, ct := range contenders {
			stats[i] = &benchStats{name: ct.name}
		}
		pipelines, scripts := batchCounts(batchedMetrics)
		for round := range benchRounds {
			// Rounds alternate the contenders, in a rotating order, so that load from other
			// processes hits all alike.
			flush()
			bare.merge(benchBareEnqueue(client, body, c))
			for i := range contenders {
				k := (i + round) % len(contenders)
				flush()
				stats[k].merge(benchHTTP(contenders[k].url, body, c))
			}
		}
		p2, s2 := batchCounts(batchedMetrics)
		recv, unbatched, minimal := stats[0], stats[1], stats[2]
		fmt.Printf("%-3d | %8.0f | %7.0f %8s / %7s | %7.0f %8s / %7s | %7.0f %8s / %7s | %-16s | %-16s | %-16s | %5.1f\n", c, rwhtest.Median(bare.rates),
			rwhtest.Median(recv.rates), ms(recv.p(0.50)), ms(recv.p(0.99)),
			rwhtest.Median(unbatched.rates), ms(unbatched.p(0.50)), ms(unbatched.p(0.99)),
			rwhtest.Median(minimal.rates), ms(minimal.p(0.50)), ms(minimal.p(0.99)),
			rwhtest.Spread(ratios(recv, minimal), 2, ""), rwhtest.Spread(ratios(unbatched, minimal), 2, ""), rwhtest.Spread(ratios(recv, unbatched), 2, ""),
			(s2-scripts)/max(p2-pipelines, 1))
		for _, s := range append(stats, bare) {
			if s.failed > 0 {
				failures = append(failures, fmt.Sprintf("c=%d %s: %d failed (%s)", c, s.name, s.failed, s.firstErr))
			}
		}
	}
	fmt.Println()
	fmt.Printf("At a fixed rate with vegeta: %d alternating rounds of %s per contender; p50, p99: median [min-max] of the rounds; max: of all rounds\n", benchRounds, benchRateTime)
	fmt.Printf("%-15s | %-6s | %8s | %8s | %-26s | %-29s | %8s\n", "contender", "rate/s", "requests", "success", "p50", "p99", "max")
	for _, rate := range benchRates {
		results := make([][]vegeta.Metrics, len(contenders))
		for round := range benchRounds {
			for i := range contenders {
				k := (i + round) % len(contenders)
				flush()
				results[k] = append(results[k], benchVegeta(contenders[k].url, body, rate))
			}
		}
		for i, ct := range contenders {
			var requests uint64
			var success, p50, p99 []float64
			var maxLatency time.Duration
			for _, m := range results[i] {
				requests += m.Requests
				success = append(success, m.Success)
				p50 = append(p50, float64(m.Latencies.P50.Microseconds())/1000)
				p99 = append(p99, float64(m.Latencies.P99.Microseconds())/1000)
				maxLatency = max(maxLatency, m.Latencies.Max)
				if m.Success < 1 {
					failures = append(failures, fmt.Sprintf("vegeta %s %d/s: success %.4f, errors %v", ct.name, rate, m.Success, m.Errors))
				}
			}
			fmt.Printf("%-15s | %-6d | %8d | %7.2f%% | %-26s | %-29s | %8s\n", ct.name, rate, requests, 100*slices.Min(success),
				rwhtest.Spread(p50, 2, "ms"), rwhtest.Spread(p99, 2, "ms"), ms(maxLatency))
		}
	}
	fmt.Println()
	failures = append(failures, benchProcesses(b, r, body, flush)...)
	if len(failures) > 0 {
		b.Errorf("failed requests: %s", strings.Join(failures, "; "))
	}
}

// benchProcesses runs the receiver binary twice, batching on and off, as processes of their own
// (flags as the operator renders them) and loads them alternately at benchProcessLoad; it
// prints their throughput and peak RSS (VmHWM: the most the process ever had resident).
func benchProcesses(b *testing.B, r *rwhtest.Redis, body []byte, flush func()) (failures []string) {
	bin := rwhtest.OperatorBinary(b)
	secrets := b.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "key"), []byte(vectorSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	procs := []*benchProcess{
		startBenchProcess(b, bin, "--enqueue-batching=true", secrets, r),
		startBenchProcess(b, bin, "--enqueue-batching=false", secrets, r),
	}
	fmt.Printf("The receiver binary as a process of its own (%s), %d alternating rounds of %s per concurrency:\n", filepath.Base(bin), benchRounds, benchPhase)
	fmt.Println("Memory: peak RSS (VmHWM) so far; own (anonymous) and binary (file-backed, shared page cache) as resident after the rounds.")
	fmt.Printf("%-26s | %-4s | %8s | %8s | %8s | %10s | %10s | %10s\n", "process", "c", "req/s", "p50", "p99", "peak RSS", "own", "binary")
	for _, c := range benchProcessLoad {
		stats := []*benchStats{{name: procs[0].flag}, {name: procs[1].flag}}
		for round := range benchRounds {
			for i := range procs {
				k := (i + round) % len(procs)
				flush()
				stats[k].merge(benchHTTP(procs[k].url, body, c))
			}
		}
		for i, p := range procs {
			peak, own, file := "n/a", "n/a", "n/a"
			if m, err := rwhtest.ProcessMemory(p.cmd.Process.Pid); err == nil {
				peak, own, file = rwhtest.MiB(m.PeakRSS), rwhtest.MiB(m.Anon), rwhtest.MiB(m.File)
			}
			fmt.Printf("%-26s | %-4d | %8.0f | %8s | %8s | %10s | %10s | %10s\n", p.flag, c, rwhtest.Median(stats[i].rates),
				ms(stats[i].p(0.5)), ms(stats[i].p(0.99)), peak, own, file)
			if stats[i].failed > 0 {
				failures = append(failures, fmt.Sprintf("process %s c=%d: %d failed (%s)", p.flag, c, stats[i].failed, stats[i].firstErr))
			}
		}
	}
	fmt.Println()
	return failures
}

type benchProcess struct {
	flag string
	url  string
	cmd  *exec.Cmd
}

// startBenchProcess starts `receiver` with the default flags plus flag, and waits until it is ready.
func startBenchProcess(b *testing.B, bin, flag, secrets string, r *rwhtest.Redis) *benchProcess {
	ports := make([]int, 2)
	for i := range ports {
		p, err := rwhtest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		ports[i] = p
	}
	cmd := exec.Command(bin, "receiver", "--listen=127.0.0.1:"+strconv.Itoa(ports[0]), "--admin-listen=127.0.0.1:"+strconv.Itoa(ports[1]),
		"--queue="+benchQueue, "--webhook=bench/hook", "--secrets-dir="+secrets, "--redis-url="+r.URL(),
		"--log-level=warn", "--shutdown-delay=0s", "--shutdown-grace=1s", flag)
	cmd.SysProcAttr = rwhtest.ChildProcAttr()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ready := "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/readyz"
	rwhtest.EventuallyTrue(b, 20*time.Second, "receiver process ready", func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return &benchProcess{flag: flag, url: "http://127.0.0.1:" + strconv.Itoa(ports[0]) + "/", cmd: cmd}
}

// benchBody is a Resend-like email.delivered event of about 1 KB.
func benchBody() []byte {
	pad := strings.Repeat("x", 800)
	return fmt.Appendf(nil, `{"type":"email.delivered","created_at":"2026-11-28T15:00:00.000Z","data":{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example","pad":%q}}`, pad)
}

// benchReceiver serves a receiver handler wired as the command wires it: metrics, the in-flight
// bound (default), the probe's verdict per request, logging at the production default level.
func benchReceiver(b testing.TB, client *asynq.Client, enqueuer *Enqueuer, metrics *Metrics) string {
	h, err := NewHandler(Options{
		Client: client, Secrets: StaticSecrets{mustWebhook(b)}, Queue: benchQueue, Webhook: "bench/hook",
		Enqueuer: enqueuer, Metrics: metrics, RedisHealth: (&redisProbe{}).failure,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		b.Fatal(err)
	}
	return benchServe(b, h)
}

func mustWebhook(b testing.TB) *svix.Webhook {
	wh, err := svix.NewWebhook(vectorSecret)
	if err != nil {
		b.Fatal(err)
	}
	return wh
}

// batchCounts is the number of enqueue pipelines sent and of scripts they carried so far.
func batchCounts(m *Metrics) (pipelines, scripts float64) {
	var h dto.Metric
	if err := m.batchSize.Write(&h); err != nil {
		return 0, 0
	}
	return float64(h.GetHistogram().GetSampleCount()), h.GetHistogram().GetSampleSum()
}

func benchServe(b testing.TB, h http.Handler) string {
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
	rates     []float64 // per round
	latencies []time.Duration
	firstErr  string
}

// merge adds the round o to s.
func (s *benchStats) merge(o *benchStats) {
	s.n += o.n
	s.failed += o.failed
	s.elapsed += o.elapsed
	s.rates = append(s.rates, o.rate())
	s.latencies = append(s.latencies, o.latencies...)
	slices.Sort(s.latencies)
	s.firstErr = cmpOr(s.firstErr, o.firstErr)
}

func (s *benchStats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

// ratios are the per-round ratios of x's rate to y's (rounds run back to back).
func ratios(x, y *benchStats) []float64 {
	out := make([]float64, min(len(x.rates), len(y.rates)))
	for i := range out {
		out[i] = x.rates[i] / y.rates[i]
	}
	return out
}

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

// BenchmarkServeHTTP is one accepted webhook through Handler.ServeHTTP, without the network
// in front of it (a recorder) but with the real enqueue, for profiles and allocation counts:
//
//	go test -run '^$' -bench BenchmarkServeHTTP -benchmem -cpuprofile cpu.out ./receiver/
func BenchmarkServeHTTP(b *testing.B) {
	for _, batching := range []bool{false, true} {
		b.Run(fmt.Sprintf("batching=%v", batching), func(b *testing.B) {
			r := rwhtest.StartRedis(b)
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), PoolSize: benchPoolSize})
			b.Cleanup(func() { _ = rdb.Close() })
			var enqueuer *Enqueuer
			if batching {
				var err error
				if enqueuer, err = NewEnqueuer(rdb, EnqueuerOptions{Batch: true}); err != nil {
					b.Fatal(err)
				}
			}
			h, err := NewHandler(Options{
				Client: asynq.NewClientFromRedisClient(rdb), Secrets: StaticSecrets{mustWebhook(b)}, Queue: benchQueue,
				Webhook: "bench/hook", Enqueuer: enqueuer, Metrics: NewMetrics(prometheus.NewRegistry(), "bench/hook"),
				RedisHealth: (&redisProbe{}).failure,
				Logger:      slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
			})
			if err != nil {
				b.Fatal(err)
			}
			body := benchBody()
			headers := signedHeaders(fmt.Sprintf("msg_serve%d_", benchPrefix.Add(1)), body, b.N)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16) // 32 requests at once on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
					req.Header = headers[next.Add(1)-1]
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
