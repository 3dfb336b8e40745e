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
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// BenchmarkWorker drains N pre-enqueued 1 KB events (enqueued as the receiver does) four ways
// on the same Redis with the same concurrency and poll intervals, alternating over rounds:
//
//	bare:  a bare asynq.Server with a no-op handler (the yardstick)
//	sdk:   our Worker with a no-op handler (routing, event decoding, metrics, retry policy)
//	sink:  our Worker forwarding every event over HTTP to a local no-op sink (the built-in worker)
//	post:  a bare asynq.Server whose handler does a minimal http POST to the same sink (what
//	       HTTP itself costs, without the worker's signing headers, metrics and routing)
//	nobrk: sink with the circuit breaker disabled (what the breaker costs on the happy path)
//
// Each round runs the five variants back to back (order rotated per round) and computes the
// ratios sink/bare, sdk/bare, sink/post and sink/nobrk within the round, because the CPU is shared with
// whatever else runs; it reports their median and spread, at concurrency 10 (the default) and
// 100. Then the worker binary drains N events to the same sink as a process of its own, at
// both concurrencies: its rate and memory. RWH_BENCH_TASKS (default 10000) and
// RWH_BENCH_ROUNDS (default 5) change the size.
func BenchmarkWorker(b *testing.B) {
	n := envInt("RWH_BENCH_TASKS", 10000)
	rounds := envInt("RWH_BENCH_ROUNDS", 5)
	r := testutil.StartRedis(b)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}

	var delivered atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
	}))
	defer sink.Close()

	body := eventBody(EventEmailDelivered, 1024)
	kinds := []string{"bare", "sdk", "sink", "post", "nobrk"}
	fmt.Printf("\nBenchmarkWorker: %d tasks x 1 KB per variant and round, %d rounds, order rotated; Redis, the sink and the worker share GOMAXPROCS=%d.\n"+
		"Rates: median of the rounds; ratios: median [min-max] of the per-round ratios.\n", n, rounds, runtime.GOMAXPROCS(0))
	fmt.Printf("Reproduce: make bench-worker (go test -run '^$' -bench '^BenchmarkWorker$' -benchtime 1x ./worker/, RWH_BINARY=bin/resend-webhook-operator). Load average %s at start.\n", testutil.LoadAverage())
	defer func() { fmt.Printf("Load average %s at the end.\n", testutil.LoadAverage()) }()
	fmt.Printf("%-4s | %8s | %8s | %8s | %8s | %8s | %-16s | %-16s | %-23s | %-16s\n", "c", "bare/s", "sdk/s", "sink/s", "post/s", "nobrk/s", "sdk/bare", "sink/bare", "sink/post (goal >= 1.0)", "breaker on/off")
	fmt.Println(strings.Repeat("-", 150))
	meter := testutil.NewCPUMeter(r.Client(b), 0)
	var cpuTable []string
	for _, concurrency := range []int{10, 100} {
		tput := map[string][]float64{}   // per kind, one figure per round
		ratios := map[string][]float64{} // per ratio, computed within each round (the CPU is shared)
		cpu := map[string][]float64{}    // per kind, CPU µs per task of each round
		for round := range b.N * rounds {
			got := map[string]float64{}
			for i := range kinds { // rotate the order so no variant always runs first or last
				kind := kinds[(i+round)%len(kinds)]
				queue := fmt.Sprintf("bench.%s.%d.%d", kind, concurrency, round)
				enqueueMany(b, opt, queue, n, body)
				var handled atomic.Int64
				count := &handled
				if kind == "sink" || kind == "post" || kind == "nobrk" {
					delivered.Store(0)
					count = &delivered
				}
				before, err := meter.Now()
				if err != nil {
					b.Fatal(err)
				}
				elapsed := drain(b, kind, opt, queue, concurrency, sink.URL, n, count, &handled)
				after, err := meter.Now()
				if err != nil {
					b.Fatal(err)
				}
				got[kind] = float64(n) / elapsed.Seconds()
				tput[kind] = append(tput[kind], got[kind])
				cpu[kind] = append(cpu[kind], float64((after-before).Microseconds())/float64(n))
			}
			ratios["sink/bare"] = append(ratios["sink/bare"], got["sink"]/got["bare"])
			ratios["sdk/bare"] = append(ratios["sdk/bare"], got["sdk"]/got["bare"])
			ratios["sink/post"] = append(ratios["sink/post"], got["sink"]/got["post"])
			ratios["breaker"] = append(ratios["breaker"], got["sink"]/got["nobrk"])
			n := len(cpu["bare"]) - 1 // by CPU: the other's CPU per task over ours, as for rates
			ratios["sdk/bare cpu"] = append(ratios["sdk/bare cpu"], cpu["bare"][n]/cpu["sdk"][n])
			ratios["sink/bare cpu"] = append(ratios["sink/bare cpu"], cpu["bare"][n]/cpu["sink"][n])
			ratios["sink/post cpu"] = append(ratios["sink/post cpu"], cpu["post"][n]/cpu["sink"][n])
			ratios["breaker cpu"] = append(ratios["breaker cpu"], cpu["nobrk"][n]/cpu["sink"][n])
		}
		cpuTable = append(cpuTable, fmt.Sprintf("%-4d | %-18s | %-18s | %-18s | %-18s | %-18s | %-16s | %-16s | %-16s | %-16s", concurrency,
			testutil.Spread(cpu["bare"], 1, ""), testutil.Spread(cpu["sdk"], 1, ""), testutil.Spread(cpu["sink"], 1, ""), testutil.Spread(cpu["post"], 1, ""), testutil.Spread(cpu["nobrk"], 1, ""),
			testutil.Spread(ratios["sdk/bare cpu"], 2, ""), testutil.Spread(ratios["sink/bare cpu"], 2, ""), testutil.Spread(ratios["sink/post cpu"], 2, ""), testutil.Spread(ratios["breaker cpu"], 2, "")))
		fmt.Printf("%-4d | %8.0f | %8.0f | %8.0f | %8.0f | %8.0f | %-16s | %-16s | %-23s | %-16s\n", concurrency,
			testutil.Median(tput["bare"]), testutil.Median(tput["sdk"]), testutil.Median(tput["sink"]), testutil.Median(tput["post"]), testutil.Median(tput["nobrk"]),
			testutil.Spread(ratios["sdk/bare"], 2, ""), testutil.Spread(ratios["sink/bare"], 2, ""), testutil.Spread(ratios["sink/post"], 2, ""), testutil.Spread(ratios["breaker"], 2, ""))
		for _, k := range kinds {
			b.ReportMetric(testutil.Median(tput[k]), fmt.Sprintf("%s_c%d_tasks/s", k, concurrency))
		}
	}
	fmt.Println()
	fmt.Println("CPU per task, µs (this process: the consumer and the sink, not the enqueue before; plus redis-server): median [min-max] of the rounds.")
	fmt.Println("Ratios by CPU: the other's CPU per task over ours, the rate ratio of a machine with nothing else to do.")
	fmt.Printf("%-4s | %-18s | %-18s | %-18s | %-18s | %-18s | %-16s | %-16s | %-16s | %-16s\n", "c", "bare", "sdk", "sink", "post", "nobrk", "sdk/bare", "sink/bare", "sink/post", "breaker on/off")
	for _, row := range cpuTable {
		fmt.Println(row)
	}
	fmt.Println()
	benchWorkerProcess(b, r, opt, sink.URL, body, n, rounds, &delivered)
}

// benchWorkerProcess runs the worker binary (flags as the operator renders them, the sink as
// --sink-url) on a queue of n pre-enqueued events, once per round and concurrency, and prints
// its rate (first to last delivery, so startup does not count) and memory.
func benchWorkerProcess(b *testing.B, r *testutil.Redis, opt asynq.RedisConnOpt, sinkURL string, body []byte, n, rounds int, delivered *atomic.Int64) {
	bin := testutil.OperatorBinary(b)
	fmt.Printf("The worker binary as a process of its own (%s) draining %d events to the sink, %d rounds:\n", filepath.Base(bin), n, rounds)
	fmt.Println("Memory: start-up: peak RSS (VmHWM) at the first delivery; under load: peak RSS from then on (VmHWM reset); own (anonymous) and binary (file-backed, shared page cache) as resident at the end.")
	fmt.Println("CPU: of the worker process and redis-server from the first delivery to the last, µs per task, median [min-max].")
	fmt.Printf("%-14s | %8s | %-18s | %10s | %10s | %10s | %10s\n", "concurrency", "tasks/s", "CPU µs/task", "start-up", "under load", "own", "binary")
	for _, concurrency := range []int{10, 100} {
		var rates, cpu []float64
		var mem testutil.Memory
		var startupPeak int64
		for round := range rounds {
			queue := fmt.Sprintf("bench.process.%d.%d", concurrency, round)
			enqueueMany(b, opt, queue, n, body)
			delivered.Store(0)
			admin, err := testutil.FreePort()
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(bin, "worker", "--queue="+queue, "--redis-url="+r.URL(), "--sink-url="+sinkURL,
				"--concurrency="+strconv.Itoa(concurrency), "--admin-listen=127.0.0.1:"+strconv.Itoa(admin),
				"--poll-interval=100ms", "--log-level=warn", "--shutdown-grace=1s")
			cmd.SysProcAttr = testutil.ChildProcAttr()
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			meter := testutil.NewCPUMeter(r.Client(b), cmd.Process.Pid)
			testutil.EventuallyTrue(b, 20*time.Second, "first delivery", func() bool { return delivered.Load() > 0 })
			if m, err := testutil.ProcessMemory(cmd.Process.Pid); err == nil && testutil.ResetPeakRSS(cmd.Process.Pid) == nil {
				startupPeak = max(startupPeak, m.PeakRSS)
			}
			start := time.Now()
			cpuBefore, err := meter.Now()
			if err != nil {
				b.Fatal(err)
			}
			first := delivered.Load()
			testutil.EventuallyTrue(b, 10*time.Minute, "all delivered", func() bool { return delivered.Load() >= int64(n) })
			rates = append(rates, float64(int64(n)-first)/time.Since(start).Seconds())
			if cpuAfter, err := meter.Now(); err == nil {
				cpu = append(cpu, float64((cpuAfter-cpuBefore).Microseconds())/float64(int64(n)-first))
			}
			if m, err := testutil.ProcessMemory(cmd.Process.Pid); err == nil {
				mem.PeakRSS, mem.Anon, mem.File = max(mem.PeakRSS, m.PeakRSS), max(mem.Anon, m.Anon), max(mem.File, m.File)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				b.Errorf("worker process: %v", err)
			}
		}
		fmt.Printf("%-14d | %8.0f | %-18s | %10s | %10s | %10s | %10s\n", concurrency, testutil.Median(rates), testutil.Spread(cpu, 1, ""),
			testutil.MiB(startupPeak), testutil.MiB(mem.PeakRSS), testutil.MiB(mem.Anon), testutil.MiB(mem.File))
	}
	fmt.Println()
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
			Breaker: BreakerConfig{Disabled: kind == "nobrk"}, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if kind == "sink" || kind == "nobrk" {
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
// without a signing secret, on its HTTP/1.1 pool and through net/http's transport) and by a
// minimal http.Client.Do, for profiles and allocation counts without asynq and Redis around
// them (the sink's server side is in every figure):
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
	for _, tc := range []struct {
		name, secret string
		transport    bool // through net/http's transport, as https sinks are
	}{{"sink", "", false}, {"sink-signed", secret, false}, {"sink-transport", "", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewSink(SinkConfig{URL: srv.URL + "/hook?token=x", Timeout: 10 * time.Second, SecretFile: tc.secret, MaxConns: conns}, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if tc.transport {
				withoutPool(s)
			}
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
// breaker, metrics) with a no-op handler, without asynq's dequeue and completion around it,
// with the circuit breaker on (the default) and off:
//
//	go test -run '^$' -bench BenchmarkProcessTask -benchmem -cpuprofile cpu.out ./worker/
func BenchmarkProcessTask(b *testing.B) {
	for _, breaker := range []string{"breaker-on", "breaker-off"} {
		b.Run(breaker, func(b *testing.B) {
			w, err := New(Config{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Logger: slog.New(slog.DiscardHandler),
				Breaker: BreakerConfig{Disabled: breaker == "breaker-off"}})
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
		})
	}
}
