package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The operator's own status write must not trigger the next reconcile (with queue figures that
// change on every read that would be a tight write loop), and figures alone are written at most
// once per queue-status interval even though the webhook is looked at five times a second.
func TestBusyQueueDoesNotLoopStatusWrites(t *testing.T) {
	const window = 6 * time.Second
	const interval = 2 * time.Second
	useDedicatedManager(t, func(o *manager.Options) {
		o.Controller.StatusRefresh = 200 * time.Millisecond
		o.Controller.QueueStatusInterval = interval
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	red := testutil.StartRedis(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", red.URL())
	mustCreate(t, rw)
	waitCondition(t, rw, v1alpha1.ConditionQueueReachable, metav1.ConditionTrue, v1alpha1.ReasonReachable)

	// Keep the queue busy: its pending count changes between any two reads.
	ac := asynq.NewClient(asynq.RedisClientOpt{Addr: red.Addr()})
	defer func() { _ = ac.Close() }()
	enqueued := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(window)
		var err error
		for time.Now().Before(deadline) && err == nil {
			_, err = ac.Enqueue(asynq.NewTask("resend:email.sent", []byte("{}")), asynq.Queue(rw.QueueName()))
		}
		enqueued <- err
	}()

	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: manager.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &v1alpha1.ResendWebhookList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	writes := 0
	versions := map[string]bool{}
	timeout := time.After(window)
observe:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed early")
			}
			if ev.Type != watch.Modified {
				continue
			}
			if rv := ev.Object.(client.Object).GetResourceVersion(); !versions[rv] {
				versions[rv] = true
				writes++
			}
		case <-timeout:
			break observe
		}
	}
	if err := <-enqueued; err != nil {
		t.Fatal(err)
	}
	if limit := int(window/interval) + 1; writes > limit {
		t.Errorf("%d status writes in %s with a %s queue-status interval, want ≤ %d", writes, window, interval, limit)
	}
	if writes == 0 {
		t.Error("no status write at all: the refresh did not follow the queue figures")
	}
	testutil.Eventually(t, wait, "figures follow the queue", func() error {
		if p := currentStatus(t, rw).Queue.Pending; p == 0 {
			return fmt.Errorf("pending %d after enqueueing", p)
		}
		return nil
	})
	t.Logf("%d status writes in %s", writes, window)
}
