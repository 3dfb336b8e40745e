package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	svix "github.com/svix/svix-webhooks/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// TestRedisCluster runs a receiver and a worker with the arguments the operator renders for a
// webhook on a real three-node Redis Cluster (AOF fsynced on every write), over HTTP:
//
//	shards_1, shards_4: every acknowledged event is delivered once; re-deliveries of all of
//	  them are acknowledged and dropped, each on its event's shard; with 4 shards every shard
//	  carried events and the shards sit on all three primaries.
//	node_restarted: a primary holding a shard is killed mid-traffic and restarted from its
//	  AOF; the sender retries what was not acknowledged, as Resend does. Every acknowledged
//	  event reaches the sink: none is lost.
func TestRedisCluster(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3)
	t.Run("shards_1", func(t *testing.T) { runOnCluster(t, cluster, "one", 1, 1500, false) })
	t.Run("shards_4", func(t *testing.T) { runOnCluster(t, cluster, "four", 4, 1500, false) })
	t.Run("node_restarted", func(t *testing.T) { runOnCluster(t, cluster, "restart", 4, 3000, true) })
}

func runOnCluster(t *testing.T, cluster *testutil.RedisCluster, name string, shards, events int, restart bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := newFlakySink(t)
	sink.up(t)
	rw := &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "cluster"},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: "signing"},
			Queue: v1alpha1.QueueSpec{
				Redis:  v1alpha1.RedisSpec{URL: "redis://" + cluster.Addrs()[0], Cluster: &v1alpha1.RedisClusterSpec{Addrs: cluster.Addrs()}},
				Shards: new(int32(shards)),
			},
			Worker: &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://" + sink.addr + "/hooks"}},
		},
	}
	rw.Default()
	queues := shard.Queues(rw.QueueName(), shards)

	comps := newComponents(t)
	url, _ := comps.receiver(rw)
	comps.worker(rw, "--poll-interval=100ms")

	post := newSignedPoster(t, url, e2eSecret)
	ids := make([]string, events)
	for i := range ids {
		ids[i] = fmt.Sprintf("msg_%s_%05d", name, i)
	}
	var acked, refused atomic.Int64
	var killed sync.Once
	victim := -1
	if restart {
		var err error
		if victim, err = cluster.PrimaryFor(ctx, queuestore.PendingKey(queues[0])); err != nil {
			t.Fatal(err)
		}
	}
	restarted := make(chan error, 1)
	began := time.Now()
	err := testutil.ForEachParallel(events, 8, func(i int) error {
		if restart && acked.Load() >= int64(events/3) {
			killed.Do(func() {
				cluster.KillNode(victim) // SIGKILL mid-traffic
				go func() {
					waitFor(2 * time.Second) // the outage itself
					restarted <- cluster.RestartNode(victim)
				}()
			})
		}
		// Like Resend: deliver again until acknowledged (bounded).
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); {
			if post(ids[i]) == http.StatusOK {
				acked.Add(1)
				return nil
			}
			refused.Add(1)
			waitFor(100 * time.Millisecond) // the sender's pause before it delivers again
		}
		return fmt.Errorf("%s never acknowledged", ids[i])
	})
	if err != nil {
		t.Fatal(err)
	}
	if restart {
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatalf("restart node %d: %v", victim, err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the node restart did not finish within a minute")
		}
	}
	sent := time.Since(began)
	testutil.EventuallyTrue(t, 2*time.Minute, "every acknowledged event delivered", func() bool { return sink.distinct() >= events })
	delivered := sink.distinct()

	// Re-deliveries of every event: acknowledged, and dropped on their shard.
	err = testutil.ForEachParallel(events, 8, func(i int) error {
		if code := post(ids[i]); code != http.StatusOK {
			return fmt.Errorf("re-delivery of %s: %d", ids[i], code)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(cluster.Client(t))
	var processed []int
	nodes := map[int]bool{}
	for _, q := range queues {
		// A task whose completion the killed primary never recorded is still active: asynq
		// completes it once the write goes through, or runs it again after its lease (a
		// duplicate delivery, which at-least-once allows). Either way the queue empties. The
		// second way is slow: asynq's recoverer looks once a minute for leases (30 s) that
		// expired more than 30 s ago, so it can take up to about two and a half minutes.
		drained := time.Minute
		if restart {
			drained = 4 * time.Minute
		}
		var info *asynq.QueueInfo
		testutil.Eventually(t, drained, "queue "+q+" empty", func() (err error) {
			if info, err = insp.GetQueueInfo(q); err != nil {
				return err
			}
			if n := info.Pending + info.Active + info.Retry + info.Scheduled + info.Archived; n > 0 {
				return fmt.Errorf("%d tasks left: %+v", n, info)
			}
			return nil
		})
		processed = append(processed, info.ProcessedTotal)
		node, err := cluster.PrimaryFor(ctx, queuestore.PendingKey(q))
		if err != nil {
			t.Fatal(err)
		}
		nodes[node] = true
	}
	posts := sink.posts()
	t.Logf("%d shard(s) on %d primaries: %d events acknowledged in %s (%d answers were not 200), %d delivered (%d POSTs), processed per shard %v, lost %d",
		shards, len(nodes), events, sent.Round(time.Millisecond), refused.Load(), delivered, posts, processed, events-delivered)
	if restart && refused.Load() == 0 {
		t.Error("no request was refused: the node was not down while events arrived")
	}
	if delivered != events {
		t.Errorf("delivered %d distinct events, want %d", delivered, events)
	}
	if !restart && posts != events {
		t.Errorf("the sink got %d POSTs for %d events: duplicates were not dropped", posts, events)
	}
	if shards > 1 {
		if slices.Contains(processed, 0) {
			t.Errorf("a shard carried no event: %v", processed)
		}
		if len(nodes) != 3 {
			t.Errorf("%d shards sit on %d of 3 primaries", shards, len(nodes))
		}
	}
}

// newSignedPoster returns a function that POSTs a signed email.delivered event with svix-id id
// and returns the status code (0 when the request failed).
func newSignedPoster(t *testing.T, url, secret string) func(id string) int {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(client.CloseIdleConnections)
	return func(id string) int {
		body := fmt.Appendf(nil, `{"type":"email.delivered","created_at":"2026-11-28T10:00:01.000Z","data":{"email_id":"%s"}}`, id)
		now := time.Now()
		sig, err := wh.Sign(id, now, body)
		if err != nil {
			return 0
		}
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("svix-id", id)
		req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("svix-signature", sig)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
}
