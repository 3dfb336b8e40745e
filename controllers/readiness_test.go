package controllers_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// A rollout that exceeded its progress deadline is not "the spec is live": Ready=False
// RolloutFailed with one Warning Event, and `kubectl wait --for=condition=Ready` does not
// return; when the rollout completes, Ready comes back.
func TestStuckRolloutIsNotReady(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	mustCreate(t, rw)
	setAvailable(t, ns, "hooks-receiver", 2)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)

	// A new spec whose pods never become ready: the deployment controller (played here) keeps
	// the old pods and gives up after progressDeadlineSeconds.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Receiver.Image = "example.test/does-not-exist:1" })
	testutil.Eventually(t, wait, "the deployment controller's verdict", func() error {
		var d appsv1.Deployment
		if err := get(ns, "hooks-receiver", &d); err != nil {
			return err
		}
		if d.Spec.Template.Spec.Containers[0].Image != "example.test/does-not-exist:1" {
			return errors.New("new spec not applied yet")
		}
		d.Status.ObservedGeneration = d.Generation
		d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 3, 1, 2, 2
		d.Status.Conditions = []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
				Message: `ReplicaSet "hooks-receiver-5d8f" has timed out progressing.`},
		}
		return k8s.Status().Update(context.Background(), &d)
	})
	c := waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRolloutFailed)
	if !strings.Contains(c.Message, "progress deadline") || !strings.Contains(c.Message, "1 of 2 pods updated") {
		t.Errorf("Ready message %q", c.Message)
	}
	waitCondition(t, rw, v1alpha1.ConditionReceiverAvailable, metav1.ConditionFalse, v1alpha1.ReasonRolloutFailed)
	testutil.Eventually(t, wait, "RolloutFailed event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonRolloutFailed) })
	out, err := exec.Command(testutil.Kubectl(t), "--kubeconfig", kubeconfig, "-n", ns, "wait",
		"--for=condition=Ready", "rwh/hooks", "--timeout=2s").CombinedOutput()
	if err == nil {
		t.Errorf("kubectl wait returned while the rollout is stuck: %s", out)
	}
	if n := countEvents(t, ns, v1alpha1.ReasonRolloutFailed); n != 1 {
		t.Errorf("%d RolloutFailed events, want 1", n)
	}

	setAvailable(t, ns, "hooks-receiver", 2)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
}

// Receivers scaled to zero accept no webhook: not Ready, with a reason that says why.
func TestScaledToZeroIsNotReady(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Receiver.Replicas = new(int32(0))
	mustCreate(t, rw)
	setAvailable(t, ns, "hooks-receiver", 0)
	waitCondition(t, rw, v1alpha1.ConditionReceiverAvailable, metav1.ConditionFalse, v1alpha1.ReasonScaledToZero)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonScaledToZero)
	// The wide printer column shows the reason.
	out, err := exec.Command(testutil.Kubectl(t), "--kubeconfig", kubeconfig, "-n", ns, "get", "rwh", "hooks", "-o", "wide").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ScaledToZero") {
		t.Errorf("kubectl get -o wide: %v\n%s", err, out)
	}
}
