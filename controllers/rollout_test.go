package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// A missing Redis-password Secret fails both SecretResolved and QueueReachable; only the
// first, the cause, gets a Warning Event.
func TestMissingRedisPasswordWarnsOnce(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Queue.Redis.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "redis-auth", Key: "password"}
	mustCreate(t, rw)
	waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	waitCondition(t, rw, v1alpha1.ConditionQueueReachable, metav1.ConditionFalse, v1alpha1.ReasonCredentials)
	testutil.Eventually(t, wait, "SecretNotFound event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonSecretNotFound) })
	// Events are sent asynchronously: watch a short window for the one that must not come.
	consistently(t, 2*time.Second, "no CredentialsUnavailable event", eventCount(t, ns, v1alpha1.ReasonCredentials, 0))
}

// Receivers read the Redis password file once at start: a rotated password must roll them.
func TestRedisPasswordRotationRollsReceivers(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	pass := signingSecret(ns, "redis-auth", map[string]string{"password": "first"})
	mustCreate(t, pass)
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Queue.Redis.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "redis-auth", Key: "password"}
	mustCreate(t, rw)
	var d appsv1.Deployment
	testutil.Eventually(t, wait, "digest annotation", func() error {
		if err := get(ns, "hooks-receiver", &d); err != nil {
			return err
		}
		if d.Spec.Template.Annotations[render.RedisSecretsAnnotation] == "" {
			return errors.New("no Redis secrets digest on the pod template")
		}
		return nil
	})
	pass.StringData = map[string]string{"password": "second"}
	if err := k8s.Update(context.Background(), pass); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "pod template follows the new password", func() error {
		var now appsv1.Deployment
		if err := get(ns, "hooks-receiver", &now); err != nil {
			return err
		}
		before, after := d.Spec.Template.Annotations, now.Spec.Template.Annotations
		if after[render.RedisSecretsAnnotation] == before[render.RedisSecretsAnnotation] ||
			after[render.ConfigHashAnnotation] == before[render.ConfigHashAnnotation] {
			return errors.New("pod template annotations unchanged")
		}
		return nil
	})
}

// Enabling autoscaling drops spec.replicas from our apply; the receivers must keep their
// count until the HPA takes over, not fall back to the API server's default of 1.
func TestEnablingAutoscalingKeepsReplicas(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Receiver.Replicas = new(int32(3))
	mustCreate(t, rw)
	replicas := func() (int32, error) {
		var d appsv1.Deployment
		if err := get(ns, "hooks-receiver", &d); err != nil {
			return 0, err
		}
		if d.Spec.Replicas == nil {
			return 0, errors.New("no replicas")
		}
		return *d.Spec.Replicas, nil
	}
	testutil.Eventually(t, wait, "3 receivers", func() error {
		if n, err := replicas(); err != nil || n != 3 {
			return fmt.Errorf("replicas %d, %v", n, err)
		}
		return nil
	})
	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Receiver.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: new(int32(2)), MaxReplicas: 6}
	})
	// The HPA is applied after the Deployment: once it exists, the Deployment was applied
	// without replicas.
	waitFor(t, ns, "hooks-receiver", &autoscalingv2.HorizontalPodAutoscaler{})
	waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionTrue, v1alpha1.ReasonSecretsResolved)
	consistently(t, 2*time.Second, "receivers keep 3 replicas after enabling autoscaling", func() error {
		if n, err := replicas(); err != nil || n != 3 {
			return fmt.Errorf("replicas %d (%v)", n, err)
		}
		return nil
	})
	var d appsv1.Deployment
	if err := get(ns, "hooks-receiver", &d); err != nil {
		t.Fatal(err)
	}
	for _, e := range d.ManagedFields {
		if e.Manager == controllers.FieldManager && strings.Contains(string(e.FieldsV1.Raw), `"f:replicas"`) {
			t.Errorf("the operator's apply still owns spec.replicas: %s", e.FieldsV1.Raw)
		}
	}
}
