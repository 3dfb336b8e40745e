package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// state is what the enqueuer holds now: pipelines in flight and scripts waiting for one.
func (e *Enqueuer) state() (sending, queued int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sending, len(e.queue)
}

// withEnqueuer serves f's handler through a client of its own with an Enqueuer made from o.
func withEnqueuer(t *testing.T, f *fixture, o EnqueuerOptions) *Enqueuer {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr(), ReadTimeout: redisReadTimeout + o.ReplicaTimeout})
	t.Cleanup(func() { _ = rdb.Close() })
	var enq *Enqueuer
	f.serve(t, func(opts *Options) {
		o.Metrics = opts.Metrics // the fixture's fresh metrics
		var err error
		if enq, err = NewEnqueuer(rdb, o); err != nil {
			t.Fatal(err)
		}
		opts.Redis, opts.Enqueuer = rdb, enq
	})
	return enq
}

// pipelines is how many pipelines went for reason, and how many scripts all pipelines carried.
func (f *fixture) pipelines(reason flushReason) (n, scripts float64) {
	_, scripts = batchCounts(f.metrics)
	return testutil.ToFloat64(f.metrics.batches[reason]), scripts
}

// deliveries are webhook requests sent from goroutines of their own; wait collects the answers.
type deliveries struct {
	ch chan asyncAnswer
	n  int
}

type asyncAnswer struct {
	id string
	response
	err error
}

func newDeliveries() *deliveries { return &deliveries{ch: make(chan asyncAnswer, 16)} }

// send delivers body once per id, signed now, each from a goroutine of its own.
func (d *deliveries) send(t *testing.T, f *fixture, body []byte, ids ...string) {
	t.Helper()
	for _, id := range ids {
		hdr := signed(t, vectorSecret, id, time.Now(), body)
		d.n++
		go func() {
			r, err := tryDo(http.MethodPost, f.server.URL+"/", hdr, bytes.NewReader(body))
			d.ch <- asyncAnswer{id: id, response: r, err: err}
		}()
	}
}

// sendBehindAPipeline pauses f's Redis, sends first and waits until its pipeline is in flight,
// sends the others and waits until they have all queued behind it, then resumes Redis: the
// others go together in the next pipeline. The enqueuer must have sent a script before
// (warmUp), or first would wait for asynq's queue registration, not in a pipeline.
func (d *deliveries) sendBehindAPipeline(t *testing.T, f *fixture, enq *Enqueuer, body []byte, first string, others ...string) {
	t.Helper()
	if err := f.redis.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.redis.Resume() })
	d.send(t, f, body, first)
	eventually(t, 10*time.Second, "a pipeline in flight", func() bool { s, _ := enq.state(); return s == 1 })
	d.send(t, f, body, others...)
	eventually(t, 10*time.Second, "the others queued", func() bool { _, q := enq.state(); return q == len(others) })
	if err := f.redis.Resume(); err != nil {
		t.Fatal(err)
	}
}

// wait returns the answers of all requests sent so far.
func (d *deliveries) wait(t *testing.T) []asyncAnswer {
	t.Helper()
	out := make([]asyncAnswer, 0, d.n)
	for range d.n {
		select {
		case a := <-d.ch:
			if a.err != nil {
				t.Fatalf("%s: %v", a.id, a.err)
			}
			out = append(out, a)
		case <-time.After(30 * time.Second): // a bound for a broken test, not a wait
			t.Fatalf("%d of %d answers after 30s", len(out), d.n)
		}
	}
	d.n = 0
	return out
}

// warmUp delivers one request, so that asynq has published the queue and Redis has cached the
// enqueue script: later enqueues are one script each.
func warmUp(t *testing.T, f *fixture) {
	t.Helper()
	if r := f.deliver(t, "msg_warm_up", event("email.sent")); r.code != http.StatusOK {
		t.Fatalf("warm-up: %d %s", r.code, r.body)
	}
}

// TestBatchingLoneRequestGoesAtOnce: a request that finds no pipeline in flight is sent at
// once, alone: it never waits for company.
func TestBatchingLoneRequestGoesAtOnce(t *testing.T) {
	f := newFixture(t, nil)
	withEnqueuer(t, f, EnqueuerOptions{Batch: true})
	warmUp(t, f)
	for _, id := range []string{"msg_lone_1", "msg_lone_2", "msg_lone_3"} {
		immediate, scripts := f.pipelines(flushImmediate)
		if r := f.deliver(t, id, event("email.sent")); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
			t.Fatalf("%s: %d %s", id, r.code, r.body)
		}
		immediate2, scripts2 := f.pipelines(flushImmediate)
		if queued, _ := f.pipelines(flushQueued); immediate2-immediate != 1 || queued != 0 || scripts2-scripts != 1 {
			t.Fatalf("%s: %v immediate and %v queued pipelines carrying %v scripts; want it alone and at once",
				id, immediate2-immediate, queued, scripts2-scripts)
		}
	}
	if _, ok := f.task(t, "ns.hook", "msg_lone_2"); !ok {
		t.Fatal("the task of an answered request is not in Redis")
	}
}

// TestBatchingSharesARoundTrip: requests that arrive while a pipeline is in flight (Redis is
// paused under it) go together in the next one, and each gets its own answer: a second
// delivery of an svix-id in the same pipeline is a duplicate, not a second task.
func TestBatchingSharesARoundTrip(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.EnqueueTimeout = 20 * time.Second })
	enq := withEnqueuer(t, f, EnqueuerOptions{Batch: true})
	warmUp(t, f)
	immediateBefore, scriptsBefore := f.pipelines(flushImmediate)
	d := newDeliveries()
	d.sendBehindAPipeline(t, f, enq, event("email.delivered"), "msg_in_flight", "msg_a", "msg_twice", "msg_b", "msg_twice")

	got := map[string][]string{}
	for _, a := range d.wait(t) {
		if a.code != http.StatusOK {
			t.Fatalf("%s: %d %s", a.id, a.code, a.body)
		}
		got[a.id] = append(got[a.id], strings.TrimSpace(a.body))
	}
	for _, id := range []string{"msg_in_flight", "msg_a", "msg_b"} {
		if len(got[id]) != 1 || !strings.Contains(got[id][0], `"enqueued"`) {
			t.Errorf("%s: %v, want one enqueued", id, got[id])
		}
	}
	if twice := strings.Join(got["msg_twice"], " "); len(got["msg_twice"]) != 2 || !strings.Contains(twice, `"enqueued"`) || !strings.Contains(twice, "duplicate") {
		t.Errorf("msg_twice delivered twice in one pipeline: %v, want one enqueued and one duplicate", got["msg_twice"])
	}
	if n := f.tasks(t, "ns.hook"); n != 5 {
		t.Errorf("%d tasks in the queue, want 5 (with the warm-up's)", n)
	}
	immediate, scripts := f.pipelines(flushImmediate)
	if queued, _ := f.pipelines(flushQueued); immediate-immediateBefore != 1 || queued != 1 || scripts-scriptsBefore != 5 {
		t.Errorf("%v immediate and %v queued pipelines carrying %v scripts; want the first alone, then the four queued ones in one pipeline",
			immediate-immediateBefore, queued, scripts-scriptsBefore)
	}
	if f.count("200", "duplicate") != 1 || f.count("200", "enqueued") != 5 {
		t.Errorf("requests_total: %v enqueued, %v duplicate", f.count("200", "enqueued"), f.count("200", "duplicate"))
	}
}

// evalScript records that it ran for ARGV[1], then answers ARGV[1], or fails for "fail".
const evalScript = `redis.call("INCR", "ran:" .. ARGV[1])
if ARGV[1] == "fail" then return redis.error_reply("boom") end
return ARGV[1]`

// TestEnqueuerMapsResultsToTheirCallers: in one pipeline every script's value or error goes to
// the caller that sent it; a caller that gives up while queued is withdrawn and never runs.
func TestEnqueuerMapsResultsToTheirCallers(t *testing.T) {
	r := rwhtest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	metrics := NewMetrics(prometheus.NewRegistry(), "ns/hook")
	enq, err := NewEnqueuer(rdb, EnqueuerOptions{Batch: true, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	script := redis.NewScript(evalScript)
	if err := script.Load(t.Context(), rdb).Err(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		arg string
		val any
		err error
	}
	results := make(chan result, 8)
	run := func(ctx context.Context, arg string) {
		go func() {
			cmd := redis.NewCmd(ctx, "evalsha", script.Hash(), 0, arg)
			if _, err := enq.send1(ctx, cmd, ""); err != nil {
				results <- result{arg, nil, err} // cmd is not read: a pipeline may still write it
				return
			}
			v, err := cmd.Result()
			results <- result{arg, v, err}
		}()
	}

	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Resume() })
	run(t.Context(), "first")
	eventually(t, 10*time.Second, "a pipeline in flight", func() bool { s, _ := enq.state(); return s == 1 })
	giveUp, cancel := context.WithCancel(t.Context())
	for _, arg := range []string{"v1", "fail", "v3"} {
		run(t.Context(), arg)
	}
	run(giveUp, "gave-up")
	eventually(t, 10*time.Second, "four scripts queued", func() bool { _, q := enq.state(); return q == 4 })
	cancel()
	eventually(t, 10*time.Second, "the cancelled script withdrawn", func() bool { _, q := enq.state(); return q == 3 })
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}

	for range 5 {
		res := <-results
		switch res.arg {
		case "fail":
			if res.err == nil || !strings.Contains(res.err.Error(), "boom") {
				t.Errorf("fail: %v, %v; want the script's error", res.val, res.err)
			}
		case "gave-up":
			if !errors.Is(res.err, context.Canceled) {
				t.Errorf("gave-up: %v, %v; want context.Canceled", res.val, res.err)
			}
		default:
			if res.err != nil || res.val != res.arg {
				t.Errorf("%s: %v, %v; want its own value", res.arg, res.val, res.err)
			}
		}
	}
	for arg, want := range map[string]string{"first": "1", "v1": "1", "fail": "1", "v3": "1", "gave-up": ""} {
		got, err := rdb.Get(t.Context(), "ran:"+arg).Result()
		if errors.Is(err, redis.Nil) {
			got, err = "", nil
		}
		if err != nil || got != want {
			t.Errorf("script runs for %s: %q, %v; want %q", arg, got, err, want)
		}
	}
	if q := testutil.ToFloat64(metrics.batches[flushQueued]); q != 1 {
		t.Errorf("%v queued pipelines, want the three remaining scripts in one", q)
	}
}

// TestReplicaAckCoversABatch: with batching, the requests of one pipeline share a single WAIT,
// and every 200 still means the task is on the replica.
func TestReplicaAckCoversABatch(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.EnqueueTimeout = 20 * time.Second })
	replica := rwhtest.StartRedisReplica(t, f.redis)
	enq := withEnqueuer(t, f, EnqueuerOptions{Batch: true, MinReplicas: 1, ReplicaTimeout: time.Second})
	warmUp(t, f)
	waitsBefore := waitCalls(t, f.redis)
	d := newDeliveries()
	d.sendBehindAPipeline(t, f, enq, event("email.sent"), "msg_rb_first", "msg_rb_1", "msg_rb_2", "msg_rb_3")
	for _, a := range d.wait(t) {
		if a.code != http.StatusOK || !strings.Contains(a.body, "enqueued") {
			t.Fatalf("%s: %d %s", a.id, a.code, a.body)
		}
		if !onReplica(t, replica, a.id) { // no polling: the 200 waited for the replica
			t.Fatalf("%s: 200 answered but the task is not on the replica", a.id)
		}
	}
	if got := waitCalls(t, f.redis) - waitsBefore; got != 2 {
		t.Errorf("%d WAITs for 4 requests in 2 pipelines, want 2", got)
	}
}

// waitCalls is how many WAIT commands r has run.
func waitCalls(t *testing.T, r *rwhtest.Redis) int {
	t.Helper()
	info, err := r.Client(t).Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(l, "cmdstat_wait:calls="); ok {
			calls, _, _ := strings.Cut(rest, ",")
			n, err := strconv.Atoi(calls)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// TestEnqueuerOptions: the checks of NewEnqueuer.
func TestEnqueuerOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rdb.Close() })
	for _, bad := range []EnqueuerOptions{{MinReplicas: -1}, {MinReplicas: 1}, {MinReplicas: 1, ReplicaTimeout: time.Microsecond}} {
		if _, err := NewEnqueuer(rdb, bad); err == nil {
			t.Errorf("NewEnqueuer(%+v) accepted", bad)
		}
	}
	if _, err := NewEnqueuer(rdb, EnqueuerOptions{Batch: true}); err != nil {
		t.Errorf("batching alone: %v", err)
	}
}

// clusterFixtures serves one handler per queue, all on one Redis Cluster client through one
// Enqueuer made from o (as the queues of a sharded webhook share a receiver's client), with
// each handler's replica marker hash-tagged with its queue. The fixtures' Inspector reads the
// cluster on a client of its own. The returned metrics count the Enqueuer's pipelines.
func clusterFixtures(t *testing.T, c *rwhtest.RedisCluster, queues []string, o EnqueuerOptions) (map[string]*fixture, *Enqueuer, *Metrics) {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ReadTimeout: redisReadTimeout + o.ReplicaTimeout})
	t.Cleanup(func() { _ = rdb.Close() })
	o.Metrics = NewMetrics(prometheus.NewRegistry(), "ns/hook")
	enq, err := NewEnqueuer(rdb, o)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(c.Client(t))
	fixtures := map[string]*fixture{}
	for _, q := range queues {
		f := &fixture{client: client, insp: insp, logs: &syncBuffer{}}
		secrets, err := NewStaticSecrets(vectorSecret)
		if err != nil {
			t.Fatal(err)
		}
		f.opts = Options{ // newFixture's, on the cluster
			Redis: rdb, Secrets: secrets, Queue: q, Webhook: "ns/hook", Enqueuer: enq,
			MaxAttempts: 4, MaxDuration: 30 * time.Second, DedupWindow: time.Hour,
			MaxBodyBytes: 4096, Tolerance: 5 * time.Minute, EnqueueTimeout: 20 * time.Second,
			Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		f.serveWithMarker(t, clusterMarker(q))
		fixtures[q] = f
	}
	return fixtures, enq, o.Metrics
}

// clusterMarker is the replica marker of queue: in the queue's cluster slot, like its tasks.
func clusterMarker(queue string) string { return replicaMarkerKey(queue) }

// serveWithMarker serves a new handler made from f's options (fresh metrics) whose enqueues
// write marker before each WAIT.
func (f *fixture) serveWithMarker(t *testing.T, marker string) {
	t.Helper()
	f.reg = prometheus.NewRegistry()
	f.metrics = NewMetrics(f.reg, "ns/hook")
	f.opts.Metrics = f.metrics
	h, err := NewHandler(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.shards[0].marker = marker // one shard; before it serves: no request reads it concurrently
	f.handler, f.server = h, httptest.NewServer(h)
	t.Cleanup(f.server.Close)
}

// queuesOnDistinctPrimaries returns n queue names ("ns.<prefix>.<i>") whose keys live on n
// different primaries of c. Tests that share a cluster pass prefixes of their own.
func queuesOnDistinctPrimaries(t *testing.T, c *rwhtest.RedisCluster, prefix string, n int) []string {
	t.Helper()
	var queues []string
	taken := map[int]bool{}
	for i := 0; len(queues) < n && i < 1000; i++ {
		q := "ns." + prefix + "." + strconv.Itoa(i)
		p, err := c.PrimaryFor(t.Context(), "{"+q+"}")
		if err != nil {
			t.Fatal(err)
		}
		if !taken[p] {
			taken[p] = true
			queues = append(queues, q)
		}
	}
	if len(queues) < n {
		t.Fatalf("found queues on %d primaries, want %d", len(queues), n)
	}
	return queues
}

// primaryOf is the index of the primary holding queue's keys.
func primaryOf(t *testing.T, c *rwhtest.RedisCluster, queue string) int {
	t.Helper()
	p, err := c.PrimaryFor(t.Context(), "{"+queue+"}")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// holdPipeline pauses node, sends first's request for id through f and waits until its
// pipeline is in flight (held up on node); the caller sends more and then resumes node.
func (d *deliveries) holdPipeline(t *testing.T, node *rwhtest.Redis, f *fixture, enq *Enqueuer, id string) {
	t.Helper()
	if err := node.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Resume() })
	d.send(t, f, event("email.sent"), id)
	eventually(t, 10*time.Second, "a pipeline in flight", func() bool { s, _ := enq.state(); return s == 1 })
}

// testBatchingOnACluster: the hook batches enqueues through a Redis Cluster client: scripts
// for queues on three nodes go in one pipeline (go-redis splits it by node), and each request
// gets its own answer, its task in its own queue.
func testBatchingOnACluster(t *testing.T, c *rwhtest.RedisCluster) {
	queues := queuesOnDistinctPrimaries(t, c, "batch", 3)
	fs, enq, m := clusterFixtures(t, c, queues, EnqueuerOptions{Batch: true})
	for _, q := range queues {
		warmUp(t, fs[q])
	}
	queuedBefore := testutil.ToFloat64(m.batches[flushQueued])
	_, scriptsBefore := batchCounts(m)

	d := newDeliveries()
	d.holdPipeline(t, c.Node(primaryOf(t, c, queues[0])), fs[queues[0]], enq, "msg_held")
	for _, q := range queues {
		d.send(t, fs[q], event("email.sent"), "msg_"+q)
	}
	eventually(t, 10*time.Second, "three scripts queued", func() bool { _, q := enq.state(); return q == 3 })
	if err := c.Node(primaryOf(t, c, queues[0])).Resume(); err != nil {
		t.Fatal(err)
	}
	for _, a := range d.wait(t) {
		if a.code != http.StatusOK || !strings.Contains(a.body, `"enqueued"`) {
			t.Fatalf("%s: %d %s", a.id, a.code, a.body)
		}
	}
	_, scripts := batchCounts(m)
	if queued := testutil.ToFloat64(m.batches[flushQueued]) - queuedBefore; queued != 1 || scripts-scriptsBefore != 4 {
		t.Errorf("%v queued pipelines, %v scripts; want the held one, then the three queues' scripts in one pipeline", queued, scripts-scriptsBefore)
	}
	for _, q := range queues {
		id := "msg_" + q
		if info, ok := fs[q].task(t, q, id); !ok || info.Queue != q || info.Type != "resend:email.sent" {
			t.Errorf("task %s in %s: %+v, found %v", id, q, info, ok)
		}
	}
	if _, ok := fs[queues[0]].task(t, queues[0], "msg_held"); !ok {
		t.Error("the held request's task is not in its queue")
	}
}

// TestEnqueueAfterRedisLostItsScripts: Redis forgets its scripts (a restart, a failover to a
// replica that never saw them, SCRIPT FLUSH); the EVALSHA then fails with NOSCRIPT and the
// enqueue sends the script itself, with and without batching and replica acknowledgement:
// the request still gets its 200, and a re-delivery is still a duplicate. Its queue is in
// Asynq's queue set from the first enqueue on, where Asynq's Inspector finds it.
func TestEnqueueAfterRedisLostItsScripts(t *testing.T) {
	for _, o := range []EnqueuerOptions{{}, {Batch: true}, {Batch: true, MinReplicas: 1, ReplicaTimeout: time.Second}} {
		t.Run(fmt.Sprintf("batch=%v,replicas=%d", o.Batch, o.MinReplicas), func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.EnqueueTimeout = 20 * time.Second })
			if o.MinReplicas > 0 {
				rwhtest.StartRedisReplica(t, f.redis)
			}
			withEnqueuer(t, f, o)
			rdb := f.redis.Client(t)
			for i, id := range []string{"msg_noscript_1", "msg_noscript_2"} {
				if err := rdb.ScriptFlush(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				if r := f.deliver(t, id, event("email.sent")); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
					t.Fatalf("%s after SCRIPT FLUSH: %d %s", id, r.code, r.body)
				}
				if err := rdb.ScriptFlush(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				if r := f.deliver(t, id, event("email.sent")); r.code != http.StatusOK || !strings.Contains(r.body, "duplicate") {
					t.Fatalf("re-delivery of %s after SCRIPT FLUSH: %d %s", id, r.code, r.body)
				}
				if n := f.tasks(t, "ns.hook"); n != i+1 {
					t.Fatalf("%d tasks after %d events", n, i+1)
				}
			}
			queues, err := f.insp.Queues()
			if err != nil || !slices.Contains(queues, "ns.hook") {
				t.Errorf("Inspector.Queues() = %v, %v; want ns.hook listed", queues, err)
			}
		})
	}
}

// Request bodies and encoded tasks live in recycled buffers: many concurrent requests of
// different sizes must each store exactly their own body.
func TestConcurrentRequestsStoreTheirOwnBodies(t *testing.T) {
	withAndWithoutBatching(t, func(t *testing.T, batch bool) {
		f := newFixture(t, func(o *Options) { o.MaxBodyBytes = 1 << 20 })
		withEnqueuer(t, f, EnqueuerOptions{Batch: batch})
		for i, r := range sendOwnBodies(t, f, "msg_own", 300) {
			if r.err != nil || r.code != http.StatusOK {
				t.Errorf("request %d: %v, HTTP %d", i, r.err, r.code)
			}
			if !r.stored {
				t.Errorf("task %d: missing, or its payload is not its body", i)
			}
		}
	})
}

// Callers that give up (an enqueue timeout of a few milliseconds under load) leave their task's
// buffer to the garbage collector while their script may still be in a pipeline in flight: no
// task in Redis may end up with another request's bytes, and every 200 has its task.
func TestRequestsThatGiveUpCorruptNoTask(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBodyBytes, o.EnqueueTimeout = 1<<20, 2*time.Millisecond })
	withEnqueuer(t, f, EnqueuerOptions{Batch: true})
	gaveUp, stored := 0, 0
	for round := range 3 {
		for i, r := range sendOwnBodies(t, f, fmt.Sprintf("msg_gave_up_%d", round), 200) {
			switch {
			case r.err != nil:
				t.Errorf("round %d, request %d: %v", round, i, r.err)
			case r.code == http.StatusServiceUnavailable:
				gaveUp++
			case r.code != http.StatusOK:
				t.Errorf("round %d, request %d: HTTP %d", round, i, r.code)
			case !r.stored:
				t.Errorf("round %d, request %d: answered 200 but its task is missing", round, i)
			}
			if r.stored {
				stored++
			}
			if r.corrupt {
				t.Errorf("round %d, request %d: the task in Redis holds bytes other than its body", round, i)
			}
		}
	}
	t.Logf("%d of 600 requests gave up (503); %d tasks stored, each with its own body", gaveUp, stored)
	if gaveUp == 0 {
		t.Error("no request gave up: the test did not exercise that path")
	}
}

// ownBody is what became of one request of sendOwnBodies.
type ownBody struct {
	err     error
	code    int
	stored  bool // a task with this id holds exactly its body
	corrupt bool // a task with this id holds something else
}

// sendOwnBodies posts n signed events of 0 B to 100 KB (ids prefix_i) from 16 goroutines and
// reads back each task.
func sendOwnBodies(t *testing.T, f *fixture, prefix string, n int) []ownBody {
	t.Helper()
	bodies := make([][]byte, n)
	headers := make([]http.Header, n)
	for i := range bodies {
		size := (i * 137) % 20000 // 0 B to 20 KB, and some over the pools' 64 KB
		if i%50 == 7 {
			size = 100 << 10
		}
		pad := strings.Repeat(string(rune('a'+i%26)), size)
		bodies[i] = fmt.Appendf(nil, `{"type":"email.sent","i":%d,"pad":%q}`, i, pad)
		headers[i] = signed(t, vectorSecret, fmt.Sprintf("%s_%d", prefix, i), time.Now(), bodies[i])
	}
	out := make([]ownBody, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				r, err := tryDo(http.MethodPost, f.server.URL+"/webhook", headers[i], bytes.NewReader(bodies[i]))
				out[i].err, out[i].code = err, r.code
			}
		})
	}
	wg.Wait()
	for i, body := range bodies {
		if info, ok := f.task(t, "ns.hook", fmt.Sprintf("%s_%d", prefix, i)); ok {
			out[i].stored = bytes.Equal(info.Payload, body)
			out[i].corrupt = !out[i].stored
		}
	}
	return out
}
