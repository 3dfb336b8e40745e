package receiver

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

const testReplicaTimeout = 200 * time.Millisecond

// replicatedFixture is a fixture whose redis has one replica in sync, and whose handler waits
// for it, with enqueue batching on or off.
func replicatedFixture(t *testing.T, batch bool) (*fixture, *rwhtest.Redis) {
	t.Helper()
	f := newFixture(t, nil)
	replica := rwhtest.StartRedisReplica(t, f.redis)
	withEnqueuer(t, f, EnqueuerOptions{Batch: batch, MinReplicas: 1, ReplicaTimeout: testReplicaTimeout})
	return f, replica
}

// withAndWithoutBatching runs test once with enqueue batching off and once with it on.
func withAndWithoutBatching(t *testing.T, test func(t *testing.T, batch bool)) {
	for _, batch := range []bool{false, true} {
		t.Run("batching="+strconv.FormatBool(batch), func(t *testing.T) { test(t, batch) })
	}
}

// onReplica reports whether the task with this id exists on the replica.
func onReplica(t *testing.T, replica *rwhtest.Redis, id string) bool {
	t.Helper()
	n, err := replica.Client(t).Exists(t.Context(), "asynq:{ns.hook}:t:"+id).Result()
	if err != nil {
		t.Fatalf("replica: %v", err)
	}
	return n == 1
}

// TestReplicaAcknowledgement: with a replica up a 200 means the task is on it; with the replica
// stopped the answer is 503, also for a re-delivery; once the replica is back the task the
// primary kept is acknowledged as a duplicate and not enqueued again.
func TestReplicaAcknowledgement(t *testing.T) { withAndWithoutBatching(t, testReplicaAcknowledgement) }

func testReplicaAcknowledgement(t *testing.T, batch bool) {
	f, replica := replicatedFixture(t, batch)
	body := event("email.sent")
	post := func(id string) response { return f.deliver(t, id, body) }

	if r := post("msg_rep_1"); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
		t.Fatalf("replica up: %d %s", r.code, r.body)
	}
	if !onReplica(t, replica, "msg_rep_1") { // no polling: the 200 waited for the replica
		t.Fatal("200 answered but the task is not on the replica")
	}

	replica.Stop()
	for i, want := range []string{"first delivery", "re-delivery"} {
		r := post("msg_rep_2")
		if r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "replicas") {
			t.Fatalf("replica down, %s: %d %q Retry-After=%q", want, r.code, r.body, r.hdr.Get("Retry-After"))
		}
		if got := f.count("503", "replica_shortfall"); got != float64(i+1) {
			t.Fatalf("requests_total{503,replica_shortfall} = %v, want %d", got, i+1)
		}
	}
	if _, ok := f.task(t, "ns.hook", "msg_rep_2"); !ok {
		t.Fatal("the primary does not hold the task the 503 left behind")
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"reason":"replica_shortfall"`) || !strings.Contains(logs, "0 of 1 replicas acknowledged within 200ms") {
		t.Errorf("the shortfall is not logged with its cause:\n%s", f.logs.Tail(5))
	}

	if err := replica.Start(); err != nil { // back and in sync
		t.Fatal(err)
	}
	before := f.tasks(t, "ns.hook")
	if r := post("msg_rep_2"); r.code != http.StatusOK || !strings.Contains(r.body, "duplicate") {
		t.Fatalf("re-delivery with the replica back: %d %s, want 200 duplicate", r.code, r.body)
	}
	if after := f.tasks(t, "ns.hook"); after != before || !onReplica(t, replica, "msg_rep_2") {
		t.Fatalf("tasks %d → %d, on replica %v; want nothing new and the task replicated", before, after, onReplica(t, replica, "msg_rep_2"))
	}
}

// TestReplicaAckCoversDuplicates: a task written on another connection while the replica is
// frozen is not on the replica, so its re-delivery must not get 200 until the replica has it.
// The handler's connections wrote nothing since the freeze and all their writes were
// acknowledged: a WAIT without a write of its own first would count the frozen replica.
func TestReplicaAckCoversDuplicates(t *testing.T) {
	withAndWithoutBatching(t, testReplicaAckCoversDuplicates)
}

func testReplicaAckCoversDuplicates(t *testing.T, batch bool) {
	f, replica := replicatedFixture(t, batch)
	body := event("email.sent")
	post := func(id string) response { return f.deliver(t, id, body) }
	for _, id := range []string{"msg_warm_1", "msg_warm_2"} { // connections with acknowledged writes
		if r := post(id); r.code != http.StatusOK {
			t.Fatalf("warm-up %s: %d %s", id, r.code, r.body)
		}
	}

	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Resume() })
	// Enqueued outside any receiver: a plain client on its own connection, no WAIT.
	if _, err := f.client.Enqueue(asynq.NewTask("resend:email.sent", body), asynq.Queue("ns.hook"), asynq.TaskID("msg_other")); err != nil {
		t.Fatal(err)
	}
	if r := post("msg_other"); r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "replicas") {
		t.Fatalf("re-delivery with the replica frozen: %d %s, want 503 replica_shortfall", r.code, r.body)
	}
	if r := post("msg_frozen"); r.code != http.StatusServiceUnavailable {
		t.Fatalf("new delivery with the replica frozen: %d %s, want 503", r.code, r.body)
	}

	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"msg_other", "msg_frozen"} {
		rwhtest.EventuallyTrue(t, 10*time.Second, "200 duplicate once the replica caught up", func() bool {
			r := post(id)
			return r.code == http.StatusOK && strings.Contains(r.body, "duplicate")
		})
		if !onReplica(t, replica, id) {
			t.Fatalf("%s acknowledged but not on the replica", id)
		}
	}
}

// onClusterReplica reports whether key exists on the replica of the primary holding queue.
func onClusterReplica(t *testing.T, c *rwhtest.RedisCluster, queue, key string) bool {
	t.Helper()
	replica := c.Node(c.ReplicaOf(primaryOf(t, c, queue)))
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr(), MaxRetries: -1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }}) // a replica answers reads for its primary's slots
	defer func() { _ = rc.Close() }()
	n, err := rc.Exists(t.Context(), key).Result()
	if err != nil {
		t.Fatalf("replica: %v", err)
	}
	return n == 1
}

// TestOnACluster runs the receiver's Redis Cluster tests on one cluster of three primaries
// with a replica each (a cluster takes seconds to start); each test has queues of its own and
// leaves every node running.
func TestOnACluster(t *testing.T) {
	c := rwhtest.StartRedisClusterWithReplicas(t, 3)
	t.Run("batching", func(t *testing.T) { testBatchingOnACluster(t, c) })
	t.Run("replica acknowledgement", func(t *testing.T) {
		withAndWithoutBatching(t, func(t *testing.T, batch bool) { testReplicaAckOnACluster(t, c, batch) })
	})
	t.Run("marker off the queue's node", func(t *testing.T) { testReplicaAckRefusesAMarkerOffTheQueuesNode(t, c) })
}

// testReplicaAckOnACluster: on a Redis Cluster a 200 waits for the replica of the node that
// holds the task's queue. With one primary's replica frozen, requests for its queue get 503
// and requests for queues on other nodes 200, also when they share a pipeline; once the
// replica is back, the kept task is acknowledged as a duplicate.
func testReplicaAckOnACluster(t *testing.T, c *rwhtest.RedisCluster, batch bool) {
	queues := queuesOnDistinctPrimaries(t, c, "ack."+strconv.FormatBool(batch), 3)
	frozen, fine, other := queues[0], queues[1], queues[2]
	fs, enq, m := clusterFixtures(t, c, queues, EnqueuerOptions{Batch: batch, MinReplicas: 1, ReplicaTimeout: testReplicaTimeout})
	taskKey := func(q, id string) string { return "asynq:{" + q + "}:t:" + id }
	for _, q := range queues {
		if r := fs[q].deliver(t, "msg_up", event("email.sent")); r.code != http.StatusOK || !strings.Contains(r.body, "enqueued") {
			t.Fatalf("%s, replicas up: %d %s", q, r.code, r.body)
		}
		if !onClusterReplica(t, c, q, taskKey(q, "msg_up")) { // no polling: the 200 waited for the replica
			t.Fatalf("%s: 200 answered but the task is not on its primary's replica", q)
		}
	}

	replica := c.Node(c.ReplicaOf(primaryOf(t, c, frozen)))
	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Resume() })
	answers := map[string]response{}
	if batch {
		// Both behind a pipeline held up on the third queue's node: they go in one pipeline.
		queuedBefore := testutil.ToFloat64(m.batches[flushQueued])
		d := newDeliveries()
		held := c.Node(primaryOf(t, c, other))
		d.holdPipeline(t, held, fs[other], enq, "msg_held")
		d.send(t, fs[frozen], event("email.sent"), "msg_frozen")
		d.send(t, fs[fine], event("email.sent"), "msg_fine")
		eventually(t, 10*time.Second, "two scripts queued", func() bool { _, q := enq.state(); return q == 2 })
		if err := held.Resume(); err != nil {
			t.Fatal(err)
		}
		for _, a := range d.wait(t) {
			answers[a.id] = a.response
		}
		if r := answers["msg_held"]; r.code != http.StatusOK {
			t.Errorf("the held request, replicas of its node up: %d %s", r.code, r.body)
		}
		if queued := testutil.ToFloat64(m.batches[flushQueued]) - queuedBefore; queued != 1 {
			t.Errorf("%v queued pipelines, want the two requests in one", queued)
		}
	} else {
		answers["msg_frozen"] = fs[frozen].deliver(t, "msg_frozen", event("email.sent"))
		answers["msg_fine"] = fs[fine].deliver(t, "msg_fine", event("email.sent"))
	}
	if r := answers["msg_frozen"]; r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "replicas") {
		t.Errorf("queue whose replica is frozen: %d %q, want 503 replica_shortfall", r.code, r.body)
	}
	if r := answers["msg_fine"]; r.code != http.StatusOK || !onClusterReplica(t, c, fine, taskKey(fine, "msg_fine")) {
		t.Errorf("queue on another node: %d %q, want 200 with the task on its replica", r.code, r.body)
	}
	if got := fs[frozen].count("503", "replica_shortfall"); got != 1 {
		t.Errorf("requests_total{503,replica_shortfall} = %v, want 1", got)
	}
	if logs := fs[frozen].logs.String(); !strings.Contains(logs, "0 of 1 replicas acknowledged within 200ms") {
		t.Errorf("the shortfall is not logged with its cause:\n%s", fs[frozen].logs.Tail(5))
	}

	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	rwhtest.EventuallyTrue(t, 10*time.Second, "200 duplicate once the replica caught up", func() bool {
		r := fs[frozen].deliver(t, "msg_frozen", event("email.sent"))
		return r.code == http.StatusOK && strings.Contains(r.body, "duplicate")
	})
	if !onClusterReplica(t, c, frozen, taskKey(frozen, "msg_frozen")) {
		t.Fatal("acknowledged but not on the replica")
	}
}

// testReplicaAckRefusesAMarkerOffTheQueuesNode: a replica marker that is not in the queue's
// cluster slot would make the WAIT run on another node than the task's: the answer is 503,
// never a 200 that proves nothing.
func testReplicaAckRefusesAMarkerOffTheQueuesNode(t *testing.T, c *rwhtest.RedisCluster) {
	queues := queuesOnDistinctPrimaries(t, c, "offnode", 2)
	fs, _, _ := clusterFixtures(t, c, queues[:1], EnqueuerOptions{MinReplicas: 1, ReplicaTimeout: testReplicaTimeout})
	f := fs[queues[0]]
	f.serveWithMarker(t, clusterMarker(queues[1])) // on another node
	r := f.deliver(t, "msg_off_node", event("email.sent"))
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "replicas") {
		t.Fatalf("got %d %s, want 503 replica_shortfall", r.code, r.body)
	}
	if !strings.Contains(f.logs.String(), "not on the cluster node of the task's queue") {
		t.Errorf("the cause is not logged:\n%s", f.logs.Tail(3))
	}
}
