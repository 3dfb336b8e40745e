package worker_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// TestShardChangeLosesAndDuplicatesNothing: 600 events wait in the queue of a one-shard webhook
// (no worker yet). The webhook moves to 4 shards, rendered the way the operator does it
// (status.queue.previousShards: [1]): Resend re-delivers all 600 and sends 600 new ones. The
// re-deliveries are answered 200 and not enqueued again, the workers drain the old queue and the
// new shards, and the sink gets each of the 1,200 events exactly once.
func TestShardChangeLosesAndDuplicatesNothing(t *testing.T) {
	const events = 600
	r := testutil.StartRedis(t)
	sink := newFlakySink(t)
	sink.up(t)
	rw := &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "reshard", Namespace: "shards"},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: "signing"},
			Queue:         v1alpha1.QueueSpec{Redis: v1alpha1.RedisSpec{URL: r.URL()}},
			Worker:        &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://" + sink.addr + "/hooks"}},
		},
	}
	rw.Default()
	comps := newComponents(t)
	deliver := func(url string, from, to int) {
		t.Helper()
		post := newSignedPoster(t, url, e2eSecret)
		err := testutil.ForEachParallel(to-from, 8, func(i int) error {
			if code := post(fmt.Sprintf("msg_reshard_%04d", from+i)); code != http.StatusOK {
				return fmt.Errorf("event %d: %d", from+i, code)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// One shard, no worker: the events wait in the webhook's queue.
	url, stopReceiver := comps.receiver(rw, "--shutdown-delay=0s")
	deliver(url, 0, events)
	stopReceiver()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: r.Addr()})
	t.Cleanup(func() { _ = insp.Close() })
	if info, err := insp.GetQueueInfo(rw.QueueName()); err != nil || info.Pending != events {
		t.Fatalf("the one queue holds %+v, %v; want %d pending", info, err, events)
	}

	// Four shards, the old count draining: what the operator renders after the change.
	rw.Spec.Queue.Shards = new(int32(4))
	rw.Status.Queue.PreviousShards = []int32{1}
	url, _ = comps.receiver(rw)
	comps.worker(rw, "--poll-interval=100ms")
	deliver(url, 0, 2*events) // re-deliveries of the waiting events, then new ones

	testutil.EventuallyTrue(t, time.Minute, "every event delivered", func() bool { return sink.distinct() >= 2*events })
	for _, q := range append(shard.Queues(rw.QueueName(), 4), rw.QueueName()) {
		testutil.Eventually(t, 30*time.Second, "queue "+q+" drained", func() error {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				return err
			}
			if n := info.Pending + info.Active + info.Retry + info.Scheduled + info.Archived; n > 0 {
				return fmt.Errorf("%d tasks left", n)
			}
			return nil
		})
	}
	old, err := insp.GetQueueInfo(rw.QueueName())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("delivered %d distinct events in %d POSTs; the old queue completed %d", sink.distinct(), sink.posts(), old.ProcessedTotal)
	if sink.distinct() != 2*events || sink.posts() != 2*events {
		t.Errorf("sink got %d distinct events in %d POSTs, want %d once each", sink.distinct(), sink.posts(), 2*events)
	}
	if old.ProcessedTotal != events {
		t.Errorf("the old queue processed %d, want the %d that waited there", old.ProcessedTotal, events)
	}
}
