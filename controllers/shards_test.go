package controllers_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// TestShardChangeDrainsTheOldQueue: raising spec.queue.shards records the old count in
// status.queue.previousShards before the pods get the new layout, so receivers look
// re-deliveries up in the old queue and workers drain it; the old count goes once its queue is
// empty and every receiver runs the new layout, and not before.
func TestShardChangeDrainsTheOldQueue(t *testing.T) {
	useSharedManager(t)
	red := testutil.StartRedis(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", red.URL())
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x"}}
	mustCreate(t, rw)
	setAvailable(t, ns, "hooks-receiver", 2)
	setAvailable(t, ns, "hooks-worker", 1)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	if st := currentStatus(t, rw).Queue; st.Shards != 1 || len(st.PreviousShards) != 0 {
		t.Fatalf("one shard: status.queue = %+v", st)
	}
	args := func(name string) []string {
		var d appsv1.Deployment
		if err := get(ns, name, &d); err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Args
	}
	for _, name := range []string{"hooks-receiver", "hooks-worker"} {
		if a := args(name); slices.ContainsFunc(a, func(s string) bool {
			return strings.HasPrefix(s, "--shards") || strings.HasPrefix(s, "--previous-shards")
		}) {
			t.Errorf("%s: one shard renders no shard flag: %v", name, a)
		}
	}

	// A task waits in the one queue there is.
	ac := asynq.NewClient(asynq.RedisClientOpt{Addr: red.Addr()})
	t.Cleanup(func() { _ = ac.Close() })
	if _, err := ac.Enqueue(asynq.NewTask("resend:email.sent", []byte(`{}`)), asynq.Queue(rw.QueueName()), asynq.TaskID("msg_old")); err != nil {
		t.Fatal(err)
	}

	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Queue.Shards = new(int32(4)) })
	testutil.Eventually(t, wait, "both components get --shards=4 --previous-shards=1", func() error {
		for _, name := range []string{"hooks-receiver", "hooks-worker"} {
			if a := args(name); !slices.Contains(a, "--shards=4") || !slices.Contains(a, "--previous-shards=1") {
				return fmt.Errorf("%s args %v", name, a)
			}
		}
		return nil
	})
	if st := currentStatus(t, rw).Queue; st.Shards != 4 || !slices.Equal(st.PreviousShards, []int32{1}) {
		t.Fatalf("status.queue = %+v, want shards 4 and previousShards [1]", st)
	}
	setAvailable(t, ns, "hooks-receiver", 2)
	setAvailable(t, ns, "hooks-worker", 1)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	// Rolled out, figures read (the task is counted): the old queue still holds it.
	testutil.Eventually(t, wait, "the old queue's task counted", func() error {
		if st := currentStatus(t, rw).Queue; st.Pending != 1 {
			return fmt.Errorf("pending %d", st.Pending)
		}
		return nil
	})
	if st := currentStatus(t, rw).Queue; !slices.Equal(st.PreviousShards, []int32{1}) {
		t.Fatalf("previousShards dropped while the old queue holds a task: %+v", st)
	}

	// The task is done and forgotten: the old layout goes, and with it the flag.
	if err := asynq.NewInspector(asynq.RedisClientOpt{Addr: red.Addr()}).DeleteTask(rw.QueueName(), "msg_old"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "previousShards dropped and the pods without --previous-shards", func() error {
		if st := currentStatus(t, rw).Queue; len(st.PreviousShards) != 0 {
			return fmt.Errorf("previousShards %v", st.PreviousShards)
		}
		for _, name := range []string{"hooks-receiver", "hooks-worker"} {
			if a := args(name); !slices.Contains(a, "--shards=4") || slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--previous-shards") }) {
				return fmt.Errorf("%s args %v", name, a)
			}
		}
		return nil
	})

	// Back to 2: the 4 queues drain (empty, so at once after the rollout).
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Queue.Shards = new(int32(2)) })
	testutil.Eventually(t, wait, "status records 4 as previous", func() error {
		st := currentStatus(t, rw).Queue
		if st.Shards != 2 || !slices.Equal(st.PreviousShards, []int32{4}) {
			return fmt.Errorf("status.queue %+v", st)
		}
		return nil
	})
	// The status is written before the Deployments: mark the receivers available only once they
	// run the new layout, or the mark goes to the old generation.
	testutil.Eventually(t, wait, "the receivers get --shards=2 --previous-shards=4", func() error {
		if a := args("hooks-receiver"); !slices.Contains(a, "--shards=2") || !slices.Contains(a, "--previous-shards=4") {
			return fmt.Errorf("receiver args %v", a)
		}
		return nil
	})
	setAvailable(t, ns, "hooks-receiver", 2)
	testutil.Eventually(t, wait, "the empty 4 shards dropped", func() error {
		if st := currentStatus(t, rw).Queue; len(st.PreviousShards) != 0 {
			return errors.New("previousShards still set")
		}
		return nil
	})
}

// TestShardedWebhookOnACluster: the operator reads a sharded webhook's queues on a Redis
// Cluster and adds them up in status.queue; the pods get the cluster and shard flags.
func TestShardedWebhookOnACluster(t *testing.T) {
	useSharedManager(t)
	cluster := testutil.StartRedisCluster(t, 3)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", "redis://"+cluster.Addrs()[0])
	rw.Spec.Queue.Redis.Cluster = &v1alpha1.RedisClusterSpec{Addrs: cluster.Addrs()}
	rw.Spec.Queue.Shards = new(int32(3))
	mustCreate(t, rw)

	ac := asynq.NewClientFromRedisClient(cluster.Client(t))
	queues := shard.Queues(rw.QueueName(), 3)
	for i, q := range queues {
		for j := range i + 1 { // 1, 2 and 3 tasks
			if _, err := ac.Enqueue(asynq.NewTask("resend:email.sent", []byte(`{}`)), asynq.Queue(q), asynq.TaskID(fmt.Sprintf("msg_%d_%d", i, j))); err != nil {
				t.Fatal(err)
			}
		}
	}
	setAvailable(t, ns, "hooks-receiver", 2)
	waitCondition(t, rw, v1alpha1.ConditionQueueReachable, metav1.ConditionTrue, v1alpha1.ReasonReachable)
	testutil.Eventually(t, wait, "the shards' tasks added up", func() error {
		if st := currentStatus(t, rw).Queue; st.Pending != 6 || st.Shards != 3 {
			return fmt.Errorf("status.queue %+v", st)
		}
		return nil
	})
	var d appsv1.Deployment
	if err := get(ns, "hooks-receiver", &d); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--shards=3", "--redis-cluster-addrs=" + strings.Join(cluster.Addrs(), ",")} {
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, want) {
			t.Errorf("receiver args lack %s", want)
		}
	}
}
