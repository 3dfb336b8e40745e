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
	"os/signal"
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
	// benchRateRounds rounds per rate and contender: a p99 of 2,000 requests moves with every
	// scheduling hiccup of the shared cores, so the tail needs more rounds than the rates do.
	benchRateRounds = 10
	benchPoolSize   = 64 // the receiver's --redis-pool-size default
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
	unbatched := redis.NewClient(&redis.Options{Addr: r.Addr(), PoolSize: benchPoolSize})
	defer func() { _ = unbatched.Close() }()
	contenders := []struct{ name, url string }{
		{"(b) batched", benchReceiver(b, batched, enqueuer, batchedMetrics)},
		{"(b') unbatched", benchReceiver(b, unbatched, nil, NewMetrics(prometheus.NewRegistry(), "bench/hook"))},
		{"(c) minimal", benchServe(b, minimalHandler(client, mustWebhook(b), benchQueue))},
	}

	flush := func() {
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("\nBenchmarkReceiver: GOMAXPROCS=%d, NumCPU=%d, load generator and redis-server on the same cores; %d alternating rounds of %s per contender and concurrency, 1 KB body, Redis pool %d\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), benchRounds, benchPhase, benchPoolSize)
	fmt.Printf("Reproduce: make bench-receiver (go test -run '^$' -bench '^BenchmarkReceiver$' -benchtime 1x ./receiver/, RWH_BINARY=bin/resend-webhook-operator). Load average %s at start.\n", rwhtest.LoadAverage())
	defer func() { fmt.Printf("Load average %s at the end.\n", rwhtest.LoadAverage()) }()
	fmt.Println("(a) bare asynq Enqueue loop; (b) receiver, batching on (default); (b') receiver, --enqueue-batching=false; (c) minimal handler.")
	fmt.Println("Rates: median of the rounds; latencies: all rounds; ratios: median [min-max] of the per-round ratios; batch: enqueue scripts per pipeline in (b).")
	fmt.Printf("%-3s | %-8s | %-26s | %-26s | %-26s | %-16s | %-16s | %-16s | %5s\n", "c", "(a) /s",
		"(b) /s   p50 / p99", "(b') /s   p50 / p99", "(c) /s   p50 / p99", "(b)/(c)", "(b')/(c)", "(b)/(b')", "batch")
	fmt.Println(strings.Repeat("-", 165))
	var failures, cpuTable []string
	meter := rwhtest.NewCPUMeter(rdb, 0)
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
			bare.merge(metered(b, meter, func() *benchStats { return benchBareEnqueue(client, body, c) }))
			for i := range contenders {
				k := (i + round) % len(contenders)
				flush()
				stats[k].merge(metered(b, meter, func() *benchStats { return benchHTTP(contenders[k].url, body, c) }))
			}
		}
		cpuTable = append(cpuTable, fmt.Sprintf("%-3d | %-22s | %-22s | %-22s | %-22s | %-16s | %-16s", c,
			rwhtest.Spread(bare.cpu, 1, ""), rwhtest.Spread(stats[0].cpu, 1, ""), rwhtest.Spread(stats[1].cpu, 1, ""), rwhtest.Spread(stats[2].cpu, 1, ""),
			rwhtest.Spread(cpuRatios(stats[0], stats[2]), 2, ""), rwhtest.Spread(cpuRatios(stats[0], stats[1]), 2, "")))
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
	fmt.Println("CPU per request, µs (this process: load generator and server; plus redis-server): median [min-max] of the rounds.")
	fmt.Println("(b)/(c) by CPU: (c)'s CPU per request over (b)'s, the rate ratio of a machine with nothing else to do.")
	fmt.Printf("%-3s | %-22s | %-22s | %-22s | %-22s | %-16s | %-16s\n", "c", "(a)", "(b)", "(b')", "(c)", "(b)/(c) by CPU", "(b)/(b') by CPU")
	for _, row := range cpuTable {
		fmt.Println(row)
	}
	fmt.Println()
	fmt.Printf("At a fixed rate with vegeta: %d alternating rounds of %s per contender; p50, p99: median [min-max] of the rounds; p99 all: of all rounds' requests together;\n"+
		"p99/(c): the contender's p99 over the minimal handler's, per round, median [min-max]; max: of all rounds\n", benchRateRounds, benchRateTime)
	fmt.Printf("%-15s | %-6s | %8s | %8s | %-26s | %-29s | %8s | %-16s | %8s\n", "contender", "rate/s", "requests", "success", "p50", "p99", "p99 all", "p99/(c)", "max")
	const minimal = 2 // contenders[minimal] is (c)
	for _, rate := range benchRates {
		results := make([][]vegeta.Metrics, len(contenders))
		pooled := make([]vegeta.Metrics, len(contenders))
		for round := range benchRateRounds {
			for i := range contenders {
				k := (i + round) % len(contenders)
				flush()
				results[k] = append(results[k], benchVegeta(contenders[k].url, body, rate, &pooled[k]))
			}
		}
		for i, ct := range contenders {
			pooled[i].Close()
			var requests uint64
			var success, p50, p99, p99Ratio []float64
			var maxLatency time.Duration
			for _, m := range results[i] {
				requests += m.Requests
				success = append(success, m.Success)
				p50 = append(p50, float64(m.Latencies.P50.Microseconds())/1000)
				p99 = append(p99, float64(m.Latencies.P99.Microseconds())/1000)
				maxLatency = max(maxLatency, m.Latencies.Max)
				if c := results[minimal][len(p99)-1].Latencies.P99; c > 0 {
					p99Ratio = append(p99Ratio, float64(m.Latencies.P99)/float64(c))
				}
				if m.Success < 1 {
					failures = append(failures, fmt.Sprintf("vegeta %s %d/s: success %.4f, errors %v", ct.name, rate, m.Success, m.Errors))
				}
			}
			fmt.Printf("%-15s | %-6d | %8d | %7.2f%% | %-26s | %-29s | %8s | %-16s | %8s\n", ct.name, rate, requests, 100*slices.Min(success),
				rwhtest.Spread(p50, 2, "ms"), rwhtest.Spread(p99, 2, "ms"), ms(pooled[i].Latencies.P99), rwhtest.Spread(p99Ratio, 2, ""), ms(maxLatency))
		}
	}
	fmt.Println()
	failures = append(failures, benchProcesses(b, r, body, flush)...)
	if len(failures) > 0 {
		b.Errorf("failed requests: %s", strings.Join(failures, "; "))
	}
}

// benchProcesses runs the receiver binary twice, batching on and off, as processes of their own
// (flags as the operator renders them), and the minimal handler in a process of its own too,
// and loads them alternately at benchProcessLoad; it prints their throughput, the CPU each
// process and redis-server spent per request, and memory (VmHWM: the most the process ever had
// resident). Measured per process, the CPU leaves the load generator out.
func benchProcesses(b *testing.B, r *rwhtest.Redis, body []byte, flush func()) (failures []string) {
	bin := rwhtest.OperatorBinary(b)
	secrets := b.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "key"), []byte(vectorSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	admin := func() string { return "--admin-listen=127.0.0.1:" + strconv.Itoa(freePort(b)) }
	receiver := func(name, flag string) *benchProcess {
		listen, admin := freePort(b), admin()
		return startBenchProcess(b, r, name, listen, "http://127.0.0.1:"+strings.TrimPrefix(admin, "--admin-listen=127.0.0.1:")+"/readyz", nil,
			bin, "receiver", "--listen=127.0.0.1:"+strconv.Itoa(listen), admin, "--queue="+benchQueue, "--webhook=bench/hook",
			"--secrets-dir="+secrets, "--redis-url="+r.URL(), "--log-level=warn", "--shutdown-delay=0s", "--shutdown-grace=1s", flag)
	}
	minimalPort := freePort(b)
	procs := []*benchProcess{
		receiver("(b) batched", "--enqueue-batching=true"),
		receiver("(b') unbatched", "--enqueue-batching=false"),
		startBenchProcess(b, r, "(c) minimal", minimalPort, "", []string{"RWH_BENCH_MINIMAL=127.0.0.1:" + strconv.Itoa(minimalPort) + "," + r.Addr()},
			os.Args[0], "-test.run=^TestMinimalHandlerProcess$", "-test.count=1", "-test.timeout=0"),
	}
	fmt.Printf("As processes of their own: the receiver binary (%s) and the minimal handler; %d alternating rounds of %s per concurrency.\n", filepath.Base(bin), benchRounds, benchPhase)
	fmt.Println("CPU: of the process and redis-server, µs per request; (b)/(c) by CPU: (c)'s over (b)'s. Rates and CPU: median [min-max] of the rounds.")
	fmt.Println("Memory: start-up: peak RSS (VmHWM) once ready; under load: peak RSS from then on (VmHWM reset when ready); own (anonymous) and binary (file-backed, shared page cache) as resident after the rounds.")
	fmt.Printf("%-15s | %-4s | %8s | %8s | %8s | %-20s | %-16s | %10s | %10s | %10s | %10s\n", "process", "c", "req/s", "p50", "p99", "CPU µs/req", "(b)/(c) by CPU", "start-up", "under load", "own", "binary")
	for _, c := range benchProcessLoad {
		stats := make([]*benchStats, len(procs))
		for i, p := range procs {
			stats[i] = &benchStats{name: p.name}
		}
		for round := range benchRounds {
			for i := range procs {
				k := (i + round) % len(procs)
				flush()
				stats[k].merge(metered(b, procs[k].meter, func() *benchStats { return benchHTTP(procs[k].url, body, c) }))
			}
		}
		for i, p := range procs {
			peak, own, file := "n/a", "n/a", "n/a"
			if m, err := rwhtest.ProcessMemory(p.cmd.Process.Pid); err == nil {
				peak, own, file = rwhtest.MiB(m.PeakRSS), rwhtest.MiB(m.Anon), rwhtest.MiB(m.File)
			}
			fmt.Printf("%-15s | %-4d | %8.0f | %8s | %8s | %-20s | %-16s | %10s | %10s | %10s | %10s\n", p.name, c, rwhtest.Median(stats[i].rates),
				ms(stats[i].p(0.5)), ms(stats[i].p(0.99)), rwhtest.Spread(stats[i].cpu, 1, ""), rwhtest.Spread(cpuRatios(stats[i], stats[2]), 2, ""),
				p.startupPeak, peak, own, file)
			if stats[i].failed > 0 {
				failures = append(failures, fmt.Sprintf("process %s c=%d: %d failed (%s)", p.name, c, stats[i].failed, stats[i].firstErr))
			}
		}
	}
	fmt.Println()
	return failures
}

type benchProcess struct {
	name        string
	url         string
	cmd         *exec.Cmd
	meter       *rwhtest.CPUMeter // the process and redis-server
	startupPeak string            // VmHWM once ready, before the reset
}

func freePort(b *testing.B) int {
	p, err := rwhtest.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// startBenchProcess starts bin with args and env added, serving webhooks on port, and waits
// until it is ready: readyURL answers 200, or (without one) the port answers HTTP at all. Its
// meter counts the process and r.
func startBenchProcess(b *testing.B, r *rwhtest.Redis, name string, port int, readyURL string, env []string, bin string, args ...string) *benchProcess {
	p := startProcess(b, name, port, readyURL, env, bin, args...)
	p.meter = rwhtest.NewCPUMeter(r.Client(b), p.cmd.Process.Pid)
	return p
}

// startProcess is startBenchProcess without a meter; the process is stopped (SIGTERM, then
// SIGKILL after 10 s) at cleanup.
func startProcess(b *testing.B, name string, port int, readyURL string, env []string, bin string, args ...string) *benchProcess {
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = rwhtest.ChildProcAttr()
	cmd.Stderr = os.Stderr // stdout: logs at warn, or the test binary's PASS
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
	rwhtest.EventuallyTrue(b, 20*time.Second, name+" ready", func() bool {
		resp, err := http.Get(cmpOr(readyURL, url))
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return readyURL == "" || resp.StatusCode == http.StatusOK
	})
	p := &benchProcess{name: name, url: url, cmd: cmd, startupPeak: "n/a"}
	if m, err := rwhtest.ProcessMemory(cmd.Process.Pid); err == nil && rwhtest.ResetPeakRSS(cmd.Process.Pid) == nil {
		p.startupPeak = rwhtest.MiB(m.PeakRSS)
	}
	return p
}

// TestMinimalHandlerProcess is not a test: BenchmarkReceiver runs this test binary with
// RWH_BENCH_MINIMAL=<listen address>,<redis address> to serve the minimal handler as a
// process of its own, until SIGTERM.
func TestMinimalHandlerProcess(t *testing.T) {
	listen, redisAddr, ok := strings.Cut(os.Getenv("RWH_BENCH_MINIMAL"), ",")
	if !ok {
		t.Skip("run by BenchmarkReceiver")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: redisAddr, PoolSize: benchPoolSize})
	defer func() { _ = client.Close() }()
	err := admin.Serve(ctx, slog.New(slog.DiscardHandler), "minimal", listen, admin.NewServer(minimalHandler(client, mustWebhook(t), benchQueue)), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// benchBody is a Resend-like email.delivered event of about 1 KB.
func benchBody() []byte {
	pad := strings.Repeat("x", 800)
	return fmt.Appendf(nil, `{"type":"email.delivered","created_at":"2026-11-28T15:00:00.000Z","data":{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example","pad":%q}}`, pad)
}

// benchReceiver serves a receiver handler wired as the command wires it: metrics, the in-flight
// bound (default), the probe's verdict per request, logging at the production default level.
func benchReceiver(b testing.TB, rdb *redis.Client, enqueuer *Enqueuer, metrics *Metrics) string {
	h, err := NewHandler(Options{
		Redis: rdb, Secrets: mustStaticSecrets(b), Queue: benchQueue, Webhook: "bench/hook",
		Enqueuer: enqueuer, Metrics: metrics, RedisHealth: (&redisProbe{}).failure,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		b.Fatal(err)
	}
	return benchServe(b, h)
}

// mustStaticSecrets is the receiver's side of vectorSecret; mustWebhook is svix's.
func mustStaticSecrets(b testing.TB) StaticSecrets {
	s, err := NewStaticSecrets(vectorSecret)
	if err != nil {
		b.Fatal(err)
	}
	return s
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
	cpu       []float64 // per round: CPU µs per request (see metered)
	latencies []time.Duration
	firstErr  string
}

// merge adds the round o to s.
func (s *benchStats) merge(o *benchStats) {
	s.n += o.n
	s.failed += o.failed
	s.elapsed += o.elapsed
	s.rates = append(s.rates, o.rate())
	s.cpu = append(s.cpu, o.cpu...)
	s.latencies = append(s.latencies, o.latencies...)
	slices.Sort(s.latencies)
	s.firstErr = cmpOr(s.firstErr, o.firstErr)
}

func (s *benchStats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

// metered runs a round and records the CPU time meter saw per request it completed.
func metered(b *testing.B, meter *rwhtest.CPUMeter, round func() *benchStats) *benchStats {
	before, err := meter.Now()
	if err != nil {
		b.Fatal(err)
	}
	s := round()
	after, err := meter.Now()
	if err != nil {
		b.Fatal(err)
	}
	s.cpu = []float64{float64((after - before).Microseconds()) / float64(max(s.n, 1))}
	return s
}

// cpuRatios are the per-round ratios of y's CPU per request to x's: how many of x's requests
// the CPU of one of y's serves, the rate ratio x/y of a machine with nothing else to do.
func cpuRatios(x, y *benchStats) []float64 {
	out := make([]float64, min(len(x.cpu), len(y.cpu)))
	for i := range out {
		out[i] = y.cpu[i] / x.cpu[i]
	}
	return out
}

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
	return loadHTTP(url, body, benchSignedHeaders(body), c)
}

// benchSignedHeaders are the headers of a round's requests, signed beforehand, with svix-ids
// of their own.
func benchSignedHeaders(body []byte) []http.Header {
	return signedHeaders(fmt.Sprintf("msg_http%d_", benchPrefix.Add(1)), body, benchMaxReqs)
}

// loadHTTP posts body with headers (one each; benchMaxReqs of them) from c
// connections for a phase and expects 200s.
func loadHTTP(url string, body []byte, headers []http.Header, c int) *benchStats {
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

// benchVegeta runs one round at rate and returns its metrics; every result is also added to
// pooled (all rounds of a contender).
func benchVegeta(url string, body []byte, rate int, pooled *vegeta.Metrics) vegeta.Metrics {
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
		pooled.Add(res)
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
				Redis: rdb, Secrets: mustStaticSecrets(b), Queue: benchQueue,
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
			meter := rwhtest.NewCPUMeter(rdb, 0)
			cpuBefore, redisBefore := benchCPU(b, meter, rdb)
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
			b.StopTimer()
			// CPU per request, steadier than ns/op when other processes share the cores: this
			// process (handler and the requests it is handed) and redis-server apart.
			cpuAfter, redisAfter := benchCPU(b, meter, rdb)
			own := (cpuAfter - redisAfter) - (cpuBefore - redisBefore)
			b.ReportMetric(float64(own.Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64((redisAfter-redisBefore).Nanoseconds())/float64(b.N), "redis-cpu-ns/op")
		})
	}
}

// benchCPU is the CPU time used so far by this process and redis-server together, and by
// redis-server alone.
func benchCPU(b *testing.B, meter *rwhtest.CPUMeter, rdb *redis.Client) (total, redisCPU time.Duration) {
	total, err := meter.Now()
	if err == nil {
		redisCPU, err = rwhtest.RedisCPU(context.Background(), rdb)
	}
	if err != nil {
		b.Fatal(err)
	}
	return total, redisCPU
}
