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
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Objects of another app that hold every name the operator would use are never modified,
// never adopted (no owner reference) and never deleted: the webhook reports NameConflict once,
// keeps reporting it while they stand, and takes a name over only once it is free.
func TestForeignObjectsAreNeverTouched(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "shop-signing", map[string]string{"signing-secret": validSecret}))

	app := map[string]string{"app": "shop"}
	// The Deployment even carries the operator's labels, so it is in the operator's cache.
	copied := map[string]string{"app": "shop", render.LabelName: render.AppName, render.LabelInstance: "shop",
		render.LabelComponent: render.ComponentReceiver, render.LabelManagedBy: render.ManagerName}
	foreign := []client.Object{
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop", Labels: app}, Spec: networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{{Host: "shop.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: new(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "shop-web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
			}}}},
		}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-receiver", Labels: app},
			Spec: corev1.ServiceSpec{Selector: app, Ports: []corev1.ServicePort{{Port: 8080}}}},
		foreignDeployment(ns, "shop-receiver", copied),
		foreignDeployment(ns, "shop-worker", app),
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-receiver", Labels: app},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: new(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: app}}},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-receiver", Labels: app},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 3,
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "shop-web"}}},
	}
	for _, obj := range foreign {
		mustCreate(t, obj)
	}
	snapshot := func() map[string]client.Object {
		out := map[string]client.Object{}
		for _, obj := range foreign {
			got := obj.DeepCopyObject().(client.Object)
			if err := get(ns, obj.GetName(), got); err != nil {
				t.Fatalf("%T %s: %v", obj, obj.GetName(), err)
			}
			out[fmt.Sprintf("%T/%s", obj, obj.GetName())] = got
		}
		return out
	}
	before := snapshot()
	assertUntouched := func(when string) {
		t.Helper()
		for k, now := range snapshot() {
			was := before[k]
			if now.GetResourceVersion() != was.GetResourceVersion() || len(now.GetOwnerReferences()) > 0 ||
				!equality.Semantic.DeepEqual(now.GetLabels(), was.GetLabels()) || !equality.Semantic.DeepEqual(now.GetAnnotations(), was.GetAnnotations()) {
				t.Errorf("%s: %s was modified: resourceVersion %s → %s, owners %v, labels %v",
					when, k, was.GetResourceVersion(), now.GetResourceVersion(), now.GetOwnerReferences(), now.GetLabels())
			}
		}
	}

	rw := webhook(ns, "shop", sharedRed.URL())
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "hooks.example.com"}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x"}}
	rw.Spec.Receiver.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 4}
	mustCreate(t, rw)
	c := waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNameConflict)
	for _, name := range []string{"Ingress shop", "Service shop-receiver", "Deployment shop-receiver", "Deployment shop-worker",
		"PodDisruptionBudget shop-receiver", "HorizontalPodAutoscaler shop-receiver"} {
		if !strings.Contains(c.Message, name) {
			t.Errorf("Ready message does not name %s: %s", name, c.Message)
		}
	}
	testutil.Eventually(t, wait, "NameConflict event", func() error { return warningEvent(ns, "shop", v1alpha1.ReasonNameConflict) })
	// Several refreshes (1 s each) later: still untouched, still one Event, and the foreign
	// Deployment's status is not taken for the receivers'.
	consistently(t, 3*time.Second, "one NameConflict event", eventCount(t, ns, v1alpha1.ReasonNameConflict, 1))
	assertUntouched("while the webhook exists")
	if st := currentStatus(t, rw); conditionOf(st, v1alpha1.ConditionReceiverAvailable).Reason != v1alpha1.ReasonDeploymentMissing {
		t.Errorf("ReceiverAvailable reflects a Deployment the webhook does not control: %+v", conditionOf(st, v1alpha1.ConditionReceiverAvailable))
	}

	// Dropping the optional parts must not delete the same-named foreign objects.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Ingress, rw.Spec.Worker, rw.Spec.Receiver.Autoscaling = nil, nil, nil
	})
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNameConflict)
	assertUntouched("after the spec dropped them")

	// Once a name is free, the operator creates its own object there.
	if err := k8s.Delete(ctx, foreign[1]); err != nil { // the Service
		t.Fatal(err)
	}
	var svc corev1.Service
	testutil.Eventually(t, wait, "the webhook's own Service", func() error {
		if err := get(ns, "shop-receiver", &svc); err != nil {
			return err
		}
		if len(svc.OwnerReferences) == 0 {
			return errors.New("not ours yet")
		}
		return nil
	})
	testutil.Eventually(t, wait, "conflict message without the Service", func() error {
		c := conditionOf(currentStatus(t, rw), v1alpha1.ConditionReady)
		if c.Reason != v1alpha1.ReasonNameConflict || strings.Contains(c.Message, "Service shop-receiver") {
			return fmt.Errorf("Ready %s: %s", c.Reason, c.Message)
		}
		return nil
	})

	// Deleting the webhook leaves the foreign objects as they were (they have no owner
	// reference, so the garbage collector has nothing to follow).
	if err := k8s.Delete(ctx, rw); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "webhook gone", func() error { return absent(ns, "shop", &v1alpha1.ResendWebhook{}) })
	delete(before, "*v1.Service/shop-receiver")
	foreign = append(foreign[:1], foreign[2:]...)
	assertUntouched("after the webhook was deleted")
}

func foreignDeployment(ns, name string, labels map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shop"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "shop:1"}}},
			},
		},
	}
}

// conditionOf returns the condition typ of st (a zero condition when absent).
func conditionOf(st v1alpha1.ResendWebhookStatus, typ string) metav1.Condition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{}
}
