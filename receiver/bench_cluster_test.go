package receiver

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Settings of BenchmarkReceiverCluster; rounds of benchPhase, all traffic loopback.
const (
	clusterBenchRounds = 9 // per concurrency and contender
	clusterBenchNodes  = 3 // primaries of the cluster
	clusterBenchShards = 3 // --shards of the sharded contenders: one shard per primary
	// clusterBenchPersistence is every redis-server's, the standalone one's and the cluster
	// nodes': AOF with fsync once a second (the usual production setting; what a cluster node
	// gets by default in the tests, fsync on every write, would measure the disk instead).
	clusterBenchPersistence = rwhtest.AOFEverySec
)

// clusterBenchLoad are the concurrencies (connections of the load generator).
var clusterBenchLoad = []int{64, 256}

// BenchmarkReceiverCluster compares the receiver binary, as a process of its own with
// batching on (the default), on one redis-server with --shards=1 and with --shards=3 (to tell
// the cost of sharding from the gain of a cluster) and on a 3-primary Redis Cluster with
// --shards=3 (each primary gets one shard), in alternating rounds at each concurrency, with
// the same pre-signed 1 KB events. Per contender: requests per second, latency, and CPU per
// request of the receiver process and of each redis-server; ratios are taken within each round
// and reported as median [min-max]. After each round the tasks in the shards' queues must
// number the 200 answers, so a broken path cannot pass for a fast one.
// Run with `make bench-cluster`; it prints tables and runs once whatever b.N is.
func BenchmarkReceiverCluster(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once per process (use -benchtime 1x)")
	}
	bin := rwhtest.OperatorBinary(b)
	single, err := rwhtest.NewRedisPersisting(clusterBenchPersistence)
	if err != nil {
		b.Fatal(err)
	}
	defer single.Close()
	cluster, err := rwhtest.NewRedisClusterPersisting(clusterBenchNodes, 0, clusterBenchPersistence)
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	secrets := b.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "key"), []byte(vectorSecret), 0o600); err != nil {
		b.Fatal(err)
	}

	singleNode := []*redis.Client{single.Client(b)}
	var clusterNodes []*redis.Client
	for _, i := range cluster.Primaries() {
		clusterNodes = append(clusterNodes, cluster.Node(i).Client(b))
	}
	contenders := []*clusterContender{
		startClusterContender(b, bin, secrets, "1 node, shards=1", 1, single.Client(b), singleNode, "--redis-url="+single.URL()),
		startClusterContender(b, bin, secrets, "1 node, shards=3", clusterBenchShards, single.Client(b), singleNode, "--redis-url="+single.URL()),
		startClusterContender(b, bin, secrets, fmt.Sprintf("%d nodes, shards=%d", clusterBenchNodes, clusterBenchShards), clusterBenchShards,
			cluster.Client(b), clusterNodes, "--redis-cluster-addrs="+strings.Join(cluster.Addrs(), ",")),
	}
	placement, err := shardPlacement(cluster, contenders[2].queues)
	if err != nil {
		b.Fatal(err)
	}

	body := benchBody()
	fmt.Printf("\nBenchmarkReceiverCluster: GOMAXPROCS=%d, NumCPU=%d; load average %s at start\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), rwhtest.LoadAverage())
	fmt.Printf("The receiver binary (%s) as a process of its own, batching on (default), one per contender; %d alternating rounds of %s per concurrency and contender, 1 KB body.\n",
		filepath.Base(bin), clusterBenchRounds, benchPhase)
	fmt.Printf("Every redis-server: %s, no snapshots. Single node: pool 64 (--redis-pool-size); cluster: go-redis' default pool per node.\n", clusterBenchPersistence)
	fmt.Printf("Cluster: %d primaries, no replicas; shard queues on primaries %s (node index per shard).\n", clusterBenchNodes, placement)
	fmt.Println("Rates and CPU: median [min-max] of the rounds. CPU µs per request: receiver process + every redis-server of the contender; per node: each server's own.")
	fmt.Println("Cores busy: CPU seconds per second of the round, of the receiver, of the redis-servers together, and of this process (load generator).")
	fmt.Println("Batch: enqueue scripts per pipeline (a cluster client then splits each pipeline by node).")

	var failures, ratioRows []string
	// Warm-up, not counted: connections, scripts loaded, the Go runtime's heap grown.
	for _, ct := range contenders {
		if s := ct.round(b, body, clusterBenchLoad[0]); len(s.failures) > 0 {
			failures = append(failures, s.failures...)
		}
	}
	fmt.Printf("%-18s | %-4s | %-22s | %7s | %7s | %-20s | %-18s | %-26s | %-18s | %5s\n", "contender", "c", "req/s", "p50", "p99",
		"CPU µs/req", "receiver µs/req", "redis µs/req per node", "cores busy r/s/lg", "batch")
	fmt.Println(strings.Repeat("-", 170))
	for _, c := range clusterBenchLoad {
		stats := make([]*clusterStats, len(contenders))
		for i, ct := range contenders {
			stats[i] = &clusterStats{benchStats: benchStats{name: ct.name}}
		}
		for round := range clusterBenchRounds {
			for i := range contenders {
				k := (i + round) % len(contenders) // rotating order: load from elsewhere hits all alike
				stats[k].merge(contenders[k].round(b, body, c))
			}
		}
		for _, s := range stats {
			fmt.Println(s.row(c))
			failures = append(failures, s.failures...)
			if s.failed > 0 {
				failures = append(failures, fmt.Sprintf("%s c=%d: %d failed (%s)", s.name, c, s.failed, s.firstErr))
			}
		}
		st1, st3, stc := stats[0], stats[1], stats[2]
		ratioRows = append(ratioRows, fmt.Sprintf("%-4d | %-22s | %-22s | %-22s | %-22s | %-22s", c,
			rwhtest.Spread(ratios(&stc.benchStats, &st1.benchStats), 2, ""), rwhtest.Spread(ratios(&stc.benchStats, &st3.benchStats), 2, ""),
			rwhtest.Spread(ratios(&st3.benchStats, &st1.benchStats), 2, ""),
			rwhtest.Spread(cpuRatios(&stc.benchStats, &st1.benchStats), 2, ""), rwhtest.Spread(cpuRatios(&stc.benchStats, &st3.benchStats), 2, "")))
	}
	fmt.Println()
	fmt.Printf("Ratios, median [min-max] of the per-round ratios; by CPU: the other's CPU per request over the cluster's.\n")
	fmt.Printf("%-4s | %-22s | %-22s | %-22s | %-22s | %-22s\n", "c", "cluster / 1 node s=1", "cluster / 1 node s=3", "1 node s=3 / s=1", "by CPU: vs 1 node s=1", "by CPU: vs 1 node s=3")
	for _, row := range ratioRows {
		fmt.Println(row)
	}
	fmt.Printf("Load average %s at the end.\n\n", rwhtest.LoadAverage())
	if len(failures) > 0 {
		b.Errorf("broken rounds: %s", strings.Join(failures, "; "))
	}
}

// clusterContender is a receiver process with the Redis it enqueues to.
type clusterContender struct {
	name       string
	proc       *benchProcess
	metricsURL string
	queues     []string              // the shards' queues
	rdb        redis.UniversalClient // counts the tasks
	servers    []*redis.Client       // every redis-server of the contender, one each
}

func startClusterContender(b *testing.B, bin, secrets, name string, shards int, rdb redis.UniversalClient, servers []*redis.Client, redisFlag string) *clusterContender {
	listen, adminPort := freePort(b), freePort(b)
	adminURL := "http://127.0.0.1:" + strconv.Itoa(adminPort)
	proc := startProcess(b, name, listen, adminURL+"/readyz", nil, bin, "receiver",
		"--listen=127.0.0.1:"+strconv.Itoa(listen), "--admin-listen=127.0.0.1:"+strconv.Itoa(adminPort),
		"--queue="+benchQueue, "--webhook=bench/hook", "--secrets-dir="+secrets, "--log-level=warn",
		"--shutdown-delay=0s", "--shutdown-grace=1s", "--shards="+strconv.Itoa(shards), redisFlag)
	return &clusterContender{name: name, proc: proc, metricsURL: adminURL + "/metrics",
		queues: shard.Queues(benchQueue, shards), rdb: rdb, servers: servers}
}

// clusterRound is one round of one contender: its load, the CPU it took, what it left in Redis.
type clusterRound struct {
	*benchStats
	wall               time.Duration // of the CPU window
	receiver, loadgen  time.Duration // CPU
	nodes              []time.Duration
	pipelines, scripts float64
	failures           []string
}

// round empties the contender's Redis, loads the receiver at concurrency c for a phase with
// requests signed beforehand, and checks that the 200 answers left as many tasks, spread
// over every shard.
func (ct *clusterContender) round(b *testing.B, body []byte, c int) *clusterRound {
	ctx := context.Background()
	for _, s := range ct.servers {
		if err := s.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
	headers := benchSignedHeaders(body)
	before, err := ct.sample(ctx)
	if err != nil {
		b.Fatal(err)
	}
	s := loadHTTP(ct.proc.url, body, headers, c)
	after, err := ct.sample(ctx)
	if err != nil {
		b.Fatal(err)
	}
	r := &clusterRound{benchStats: s, wall: after.at.Sub(before.at), receiver: after.receiver - before.receiver, loadgen: after.loadgen - before.loadgen,
		pipelines: after.pipelines - before.pipelines, scripts: after.scripts - before.scripts}
	for i := range after.nodes {
		r.nodes = append(r.nodes, after.nodes[i]-before.nodes[i])
	}
	total := 0
	for _, q := range ct.queues {
		n, err := ct.rdb.LLen(ctx, queuestore.PendingKey(q)).Result()
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 && s.n >= 100*len(ct.queues) {
			r.failures = append(r.failures, fmt.Sprintf("%s c=%d: queue %s got none of %d tasks", ct.name, c, q, s.n))
		}
		total += int(n)
	}
	if total != s.n {
		r.failures = append(r.failures, fmt.Sprintf("%s c=%d: %d tasks pending after %d answers 200", ct.name, c, total, s.n))
	}
	return r
}

// cpuSample is the CPU time used so far by the contender's processes and this one.
type cpuSample struct {
	at                 time.Time
	receiver, loadgen  time.Duration
	nodes              []time.Duration
	pipelines, scripts float64
}

func (ct *clusterContender) sample(ctx context.Context) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var err error
	if s.receiver, err = rwhtest.ProcessCPU(ct.proc.cmd.Process.Pid); err != nil {
		return s, err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, err
	}
	s.loadgen = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, srv := range ct.servers {
		d, err := rwhtest.RedisCPU(ctx, srv)
		if err != nil {
			return s, err
		}
		s.nodes = append(s.nodes, d)
	}
	s.pipelines, s.scripts, err = scrapePipelines(ct.metricsURL)
	return s, err
}

// scrapePipelines reads the receiver's enqueue pipelines and the scripts they carried so far
// from its /metrics.
func scrapePipelines(url string) (pipelines, scripts float64, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	found := 0
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		series, value, _ := strings.Cut(sc.Text(), " ")
		name, _, _ := strings.Cut(series, "{") // the webhook label; one webhook per process
		switch name {
		case "rwh_receiver_enqueue_pipeline_size_count":
			pipelines, err = strconv.ParseFloat(value, 64)
		case "rwh_receiver_enqueue_pipeline_size_sum":
			scripts, err = strconv.ParseFloat(value, 64)
		default:
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%s: no rwh_receiver_enqueue_pipeline_size histogram", url)
	}
	return pipelines, scripts, nil
}

// clusterStats are a contender's rounds at one concurrency.
type clusterStats struct {
	benchStats                        // rates and cpu (µs per request, receiver and servers) per round
	receiverCPU             []float64 // µs per request, per round
	nodeCPU                 [][]float64
	receiverBusy, redisBusy []float64 // cores, per round
	loadgenBusy             []float64
	pipelines, scripts      float64
	failures                []string
}

func (s *clusterStats) merge(r *clusterRound) {
	n := float64(max(r.n, 1))
	perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	busy := func(d time.Duration) float64 { return d.Seconds() / r.wall.Seconds() }
	var redisCPU time.Duration
	for i, d := range r.nodes {
		if i == len(s.nodeCPU) {
			s.nodeCPU = append(s.nodeCPU, nil)
		}
		s.nodeCPU[i] = append(s.nodeCPU[i], perReq(d))
		redisCPU += d
	}
	r.cpu = []float64{perReq(r.receiver + redisCPU)}
	s.benchStats.merge(r.benchStats)
	s.receiverCPU = append(s.receiverCPU, perReq(r.receiver))
	s.receiverBusy = append(s.receiverBusy, busy(r.receiver))
	s.redisBusy = append(s.redisBusy, busy(redisCPU))
	s.loadgenBusy = append(s.loadgenBusy, busy(r.loadgen))
	s.pipelines += r.pipelines
	s.scripts += r.scripts
	s.failures = append(s.failures, r.failures...)
}

func (s *clusterStats) row(c int) string {
	nodes := make([]string, len(s.nodeCPU))
	for i, v := range s.nodeCPU {
		nodes[i] = strconv.FormatFloat(rwhtest.Median(v), 'f', 1, 64)
	}
	return fmt.Sprintf("%-18s | %-4d | %-22s | %7s | %7s | %-20s | %-18s | %-26s | %-18s | %5.1f", s.name, c,
		rwhtest.Spread(s.rates, 0, ""), ms(s.p(0.5)), ms(s.p(0.99)), rwhtest.Spread(s.cpu, 1, ""), rwhtest.Spread(s.receiverCPU, 1, ""),
		strings.Join(nodes, " / "), fmt.Sprintf("%.2f / %.2f / %.2f", rwhtest.Median(s.receiverBusy), rwhtest.Median(s.redisBusy), rwhtest.Median(s.loadgenBusy)),
		s.scripts/max(s.pipelines, 1))
}

// shardPlacement names, per shard queue, the index of the primary that holds it, and fails
// unless every shard has a primary of its own (what shard.Queues is for).
func shardPlacement(c *rwhtest.RedisCluster, queues []string) (string, error) {
	seen := map[int]bool{}
	var out []string
	for _, q := range queues {
		i, err := c.PrimaryFor(context.Background(), queuestore.PendingKey(q))
		if err != nil {
			return "", err
		}
		if seen[i] {
			return "", fmt.Errorf("shard queues %v: two on primary %d", queues, i)
		}
		seen[i] = true
		out = append(out, q+"→"+strconv.Itoa(i))
	}
	return strings.Join(out, ", "), nil
}
