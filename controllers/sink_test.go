package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/worker"
)

// TestSinkOutageAndDeadLettersShowOnTheWebhook runs the real worker with the args the operator
// renders against a sink that starts answering 503: the worker's circuit breaker opens and the
// webhook says so (SinkAvailable=False, Ready=False SinkUnavailable, a Warning Event, the -o wide
// Reason column); when the sink recovers, so does the webhook. A dead letter the worker keeps in
// its own store is counted in status.queue.archived.
func TestSinkOutageAndDeadLettersShowOnTheWebhook(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	red := testutil.StartRedis(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))

	var down atomic.Bool
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case down.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.Header.Get("webhook-id") == "msg_rejected":
			w.WriteHeader(http.StatusUnprocessableEntity) // a permanent failure: dead letter at once
		}
	}))
	t.Cleanup(sink.Close)

	rw := webhook(ns, "hooks", red.URL())
	rw.Spec.Worker = &v1alpha1.WorkerSpec{
		Sink:           &v1alpha1.SinkSpec{URL: sink.URL + "/events"},
		CircuitBreaker: v1alpha1.CircuitBreakerSpec{FailureThreshold: new(int32(2)), ProbeInterval: &metav1.Duration{Duration: 200 * time.Millisecond}, MaxProbeInterval: &metav1.Duration{Duration: time.Second}},
	}
	mustCreate(t, rw)
	setAvailable(t, ns, "hooks-receiver", 2)
	setAvailable(t, ns, "hooks-worker", 1)
	// No worker has reported yet: Unknown, which does not keep the webhook from being Ready.
	waitCondition(t, rw, v1alpha1.ConditionSinkAvailable, metav1.ConditionUnknown, v1alpha1.ReasonNoReports)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)

	// The worker as the operator renders it (its admin port moved to a free one).
	var server v1alpha1.ResendWebhook
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rw), &server); err != nil {
		t.Fatal(err)
	}
	args := append(render.WorkerArgs(&server), "--admin-listen=127.0.0.1:0", "--poll-interval=100ms")
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.MainContext(wctx, args, nil) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	waitCondition(t, rw, v1alpha1.ConditionSinkAvailable, metav1.ConditionTrue, v1alpha1.ReasonSinkReachable)

	ac := asynq.NewClient(asynq.RedisClientOpt{Addr: red.Addr()})
	t.Cleanup(func() { _ = ac.Close() })
	enqueue := func(id string) {
		t.Helper()
		tk := asynq.NewTaskWithHeaders(task.TypeName("email.sent"), []byte(`{"type":"email.sent","data":{}}`), map[string]string{task.HeaderSvixID: id})
		if _, err := ac.Enqueue(tk, asynq.Queue(server.QueueName()), asynq.TaskID(id), asynq.MaxRetry(2)); err != nil {
			t.Fatal(err)
		}
	}

	enqueue("msg_rejected")
	testutil.Eventually(t, wait, "the dead letter counted", func() error {
		if q := currentStatus(t, rw).Queue; q.Archived != 1 {
			return fmt.Errorf("queue %+v", q)
		}
		return nil
	})

	down.Store(true)
	for i := range 4 {
		enqueue(fmt.Sprintf("msg_%d", i))
	}
	c := waitCondition(t, rw, v1alpha1.ConditionSinkAvailable, metav1.ConditionFalse, v1alpha1.ReasonSinkUnavailable)
	if !strings.Contains(c.Message, "503") || strings.Contains(c.Message, sink.URL) {
		t.Errorf("SinkAvailable message %q: want the error class, never the URL", c.Message)
	}
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSinkUnavailable)
	testutil.Eventually(t, wait, "sink event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonSinkUnavailable) })
	out, err := exec.Command(testutil.Kubectl(t), "--kubeconfig", kubeconfig, "-n", ns, "get", "rwh", "hooks", "-o", "wide").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SinkUnavailable") {
		t.Errorf("kubectl get rwh -o wide does not show the outage (%v):\n%s", err, out)
	}

	down.Store(false)
	waitCondition(t, rw, v1alpha1.ConditionSinkAvailable, metav1.ConditionTrue, v1alpha1.ReasonSinkReachable)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	testutil.Eventually(t, wait, "held events delivered, the dead letter kept", func() error {
		q := currentStatus(t, rw).Queue
		if q.Pending != 0 || q.Active != 0 || q.Retry != 0 || q.Archived != 1 {
			return fmt.Errorf("queue %+v", q)
		}
		return nil
	})
}
