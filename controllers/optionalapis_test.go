package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The Gateway API and KEDA are optional: on a cluster without their CRDs a webhook asking for an
// HTTPRoute or worker autoscaling says so in a condition (the workers keep spec.worker.replicas);
// once the CRDs are installed the running operator notices, applies the HTTPRoute, ScaledObject
// and TriggerAuthentication, hands the workers' replicas to KEDA without dropping them, and
// reports the Gateway's and KEDA's verdicts. The CRDs come from the Go modules of both projects.
func TestGatewayRouteAndWorkerAutoscaling(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Queue.Redis.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "redis", Key: "password"}
	rw.Spec.Gateway = &v1alpha1.GatewaySpec{
		ParentRefs: []v1alpha1.GatewayParentRef{{Name: "public", Namespace: ns, SectionName: "https"}},
		Hostnames:  []string{"hooks.example.com"},
		Path:       "/resend",
	}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{
		Replicas:    new(int32(3)),
		Sink:        &v1alpha1.SinkSpec{URL: "http://sink.apps.svc/resend"},
		Autoscaling: &v1alpha1.WorkerAutoscalingSpec{MaxReplicas: 8, PendingPerReplica: new(int32(25))},
	}

	if crdServed(t, "httproutes.gateway.networking.k8s.io") {
		t.Log("the CRDs are installed already (a repeated run): the missing-CRD half is skipped")
		mustCreate(t, rw)
	} else {
		mustCreate(t, rw)
		waitCondition(t, rw, v1alpha1.ConditionRouteReady, metav1.ConditionFalse, v1alpha1.ReasonGatewayAPIAbsent)
		c := waitCondition(t, rw, v1alpha1.ConditionWorkerAutoscalerReady, metav1.ConditionFalse, v1alpha1.ReasonKEDAAbsent)
		if !strings.Contains(c.Message, "spec.worker.replicas (3)") {
			t.Errorf("WorkerAutoscalerReady message %q does not say the workers keep their replicas", c.Message)
		}
		var worker appsv1.Deployment
		waitFor(t, ns, "hooks-worker", &worker)
		if worker.Spec.Replicas == nil || *worker.Spec.Replicas != 3 {
			t.Fatalf("without KEDA the workers must run spec.worker.replicas 3, got %v", worker.Spec.Replicas)
		}
		waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady)
		for _, reason := range []string{v1alpha1.ReasonGatewayAPIAbsent, v1alpha1.ReasonKEDAAbsent} {
			testutil.Eventually(t, wait, reason+" event", func() error { return warningEvent(ns, "hooks", reason) })
		}

		crds := append(testutil.GatewayAPICRDs(t), testutil.KEDACRDs(t)...)
		if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true}); err != nil {
			t.Fatal(err)
		}
	}

	// The operator finds the CRDs by itself and applies the HTTPRoute and KEDA's objects.
	var route gatewayv1.HTTPRoute
	waitFor(t, ns, "hooks", &route)
	if !metav1.IsControlledBy(&route, rwFromServer(t, rw)) || len(route.Spec.ParentRefs) != 1 || string(route.Spec.Hostnames[0]) != "hooks.example.com" {
		t.Fatalf("unexpected HTTPRoute: %+v", route.Spec)
	}
	so := kedaObject(render.ScaledObjectGVK)
	waitFor(t, ns, "hooks-worker", so)
	triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	if len(triggers) != 1 {
		t.Fatalf("ScaledObject triggers %v, want one", triggers)
	}
	if md, _ := triggers[0].(map[string]any)["metadata"].(map[string]any); md["listName"] != "asynq:{"+ns+".hooks}:pending" || md["listLength"] != "25" {
		t.Errorf("ScaledObject trigger does not scale on the queue's pending list, 25 per replica: %v", md)
	}
	auth := kedaObject(render.TriggerAuthenticationGVK)
	waitFor(t, ns, "hooks-worker", auth)
	if refs, _, _ := unstructured.NestedSlice(auth.Object, "spec", "secretTargetRef"); len(refs) != 1 || !strings.Contains(fmt.Sprint(refs[0]), "redis") {
		t.Errorf("TriggerAuthentication does not hand over the Redis password Secret: %v", refs)
	}

	// The workers' replicas went over to KEDA without dropping to the API server's default of 1.
	testutil.Eventually(t, wait, "worker replicas handed over", func() error {
		var d appsv1.Deployment
		if err := get(ns, "hooks-worker", &d); err != nil { // the test client is uncached: managed fields included
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			return fmt.Errorf("replicas %v, want 3 kept", d.Spec.Replicas)
		}
		for _, e := range d.ManagedFields {
			if e.Manager == controllers.FieldManager && e.FieldsV1 != nil && strings.Contains(string(e.FieldsV1.Raw), `"f:replicas"`) {
				return errors.New("the operator still applies spec.replicas")
			}
		}
		return nil
	})

	// Nobody has answered yet: the Gateway controller and KEDA are pending.
	waitCondition(t, rw, v1alpha1.ConditionRouteReady, metav1.ConditionFalse, v1alpha1.ReasonPending)
	waitCondition(t, rw, v1alpha1.ConditionWorkerAutoscalerReady, metav1.ConditionFalse, v1alpha1.ReasonPending)

	// A Gateway controller accepts the route on the HTTPS listener of Gateway public (port 8443).
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: "example",
			Listeners: []gatewayv1.Listener{
				{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
				{Name: "https", Port: 8443, Protocol: gatewayv1.HTTPSProtocolType, Hostname: new(gatewayv1.Hostname("*.example.com")),
					TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "hooks-tls"}}}},
			},
		},
	}
	mustCreate(t, gw)
	setRouteParentStatus(t, ns, "hooks", metav1.ConditionTrue, "Accepted", metav1.ConditionFalse, "BackendNotFound")
	c := waitCondition(t, rw, v1alpha1.ConditionRouteReady, metav1.ConditionFalse, v1alpha1.ReasonRefsNotResolved)
	if !strings.Contains(c.Message, "BackendNotFound") {
		t.Errorf("RouteReady message %q lacks the Gateway's reason", c.Message)
	}
	setRouteParentStatus(t, ns, "hooks", metav1.ConditionTrue, "Accepted", metav1.ConditionTrue, "ResolvedRefs")
	waitCondition(t, rw, v1alpha1.ConditionRouteReady, metav1.ConditionTrue, v1alpha1.ReasonRouteAccepted)
	testutil.Eventually(t, wait, "status.url from the route and the listener", func() error {
		if u := currentStatus(t, rw).URL; u != "https://hooks.example.com:8443/resend" {
			return fmt.Errorf("status.url %q", u)
		}
		return nil
	})
	setRouteParentStatus(t, ns, "hooks", metav1.ConditionFalse, "NotAllowedByListeners", metav1.ConditionTrue, "ResolvedRefs")
	waitCondition(t, rw, v1alpha1.ConditionRouteReady, metav1.ConditionFalse, v1alpha1.ReasonRouteNotAccepted)
	testutil.Eventually(t, wait, "NotAccepted event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonRouteNotAccepted) })

	// KEDA reports its scaler ready.
	setScaledObjectReady(t, ns, "hooks-worker", "True")
	waitCondition(t, rw, v1alpha1.ConditionWorkerAutoscalerReady, metav1.ConditionTrue, v1alpha1.ReasonScalerReady)
	setScaledObjectReady(t, ns, "hooks-worker", "False")
	waitCondition(t, rw, v1alpha1.ConditionWorkerAutoscalerReady, metav1.ConditionFalse, v1alpha1.ReasonScalerNotReady)

	// An HTTPRoute of the same name that another team made is never touched.
	foreign := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"},
		Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{
			ParentRefs: []gatewayv1.ParentReference{{Name: "public"}},
		}},
	}
	mustCreate(t, foreign)
	shop := webhook(ns, "shop", sharedRed.URL())
	shop.Spec.SigningSecret.Name = "hooks-signing"
	shop.Spec.Gateway = &v1alpha1.GatewaySpec{ParentRefs: []v1alpha1.GatewayParentRef{{Name: "public"}}, Hostnames: []string{"shop.example.com"}}
	mustCreate(t, shop)
	c = waitCondition(t, shop, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNameConflict)
	if !strings.Contains(c.Message, "HTTPRoute shop") {
		t.Errorf("Ready message %q does not name the HTTPRoute", c.Message)
	}
	var still gatewayv1.HTTPRoute
	if err := get(ns, "shop", &still); err != nil || len(still.OwnerReferences) != 0 || len(still.Spec.Hostnames) != 0 {
		t.Errorf("the foreign HTTPRoute was modified: %v %+v", err, still)
	}

	// Dropping the gateway for an Ingress and autoscaling for fixed replicas deletes the route and
	// KEDA's objects, and gives the workers their replicas back.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Gateway = nil
		rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "hooks.example.com"}
		rw.Spec.Worker.Autoscaling = nil
	})
	testutil.Eventually(t, wait, "route and KEDA objects deleted", func() error {
		return errors.Join(absent(ns, "hooks", &gatewayv1.HTTPRoute{}), absent(ns, "hooks-worker", kedaObject(render.ScaledObjectGVK)),
			absent(ns, "hooks-worker", kedaObject(render.TriggerAuthenticationGVK)))
	})
	waitFor(t, ns, "hooks", &networkingv1.Ingress{})
	testutil.Eventually(t, wait, "workers back on spec.worker.replicas", func() error {
		var d appsv1.Deployment
		if err := get(ns, "hooks-worker", &d); err != nil {
			return err
		}
		for _, e := range d.ManagedFields {
			if e.Manager == controllers.FieldManager && e.FieldsV1 != nil && strings.Contains(string(e.FieldsV1.Raw), `"f:replicas"`) &&
				d.Spec.Replicas != nil && *d.Spec.Replicas == 3 {
				return nil
			}
		}
		return fmt.Errorf("the operator does not apply spec.replicas 3 again (replicas %v)", d.Spec.Replicas)
	})
	testutil.Eventually(t, wait, "route conditions removed", func() error {
		st := currentStatus(t, rw)
		for _, typ := range []string{v1alpha1.ConditionRouteReady, v1alpha1.ConditionWorkerAutoscalerReady} {
			if meta.FindStatusCondition(st.Conditions, typ) != nil {
				return fmt.Errorf("%s still reported", typ)
			}
		}
		return nil
	})
}

func crdServed(t *testing.T, name string) bool {
	t.Helper()
	var crd unstructured.Unstructured
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	return k8s.Get(context.Background(), client.ObjectKey{Name: name}, &crd) == nil
}

func kedaObject(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

func rwFromServer(t *testing.T, rw *v1alpha1.ResendWebhook) *v1alpha1.ResendWebhook {
	t.Helper()
	var cur v1alpha1.ResendWebhook
	if err := get(rw.Namespace, rw.Name, &cur); err != nil {
		t.Fatal(err)
	}
	return &cur
}

// setRouteParentStatus plays the Gateway controller: reports Accepted and ResolvedRefs for the
// route's only parent.
func setRouteParentStatus(t *testing.T, ns, name string, accepted metav1.ConditionStatus, acceptedReason string, refs metav1.ConditionStatus, refsReason string) {
	t.Helper()
	testutil.Eventually(t, wait, "route status "+acceptedReason+"/"+refsReason, func() error {
		var r gatewayv1.HTTPRoute
		if err := get(ns, name, &r); err != nil {
			return err
		}
		now := metav1.Now()
		r.Status.Parents = []gatewayv1.RouteParentStatus{{
			ParentRef:      r.Spec.ParentRefs[0],
			ControllerName: "example.com/gateway-controller",
			Conditions: []metav1.Condition{
				{Type: "Accepted", Status: accepted, Reason: acceptedReason, Message: "by the test", ObservedGeneration: r.Generation, LastTransitionTime: now},
				{Type: "ResolvedRefs", Status: refs, Reason: refsReason, Message: "by the test", ObservedGeneration: r.Generation, LastTransitionTime: now},
			},
		}}
		return k8s.Status().Update(context.Background(), &r)
	})
}

// setScaledObjectReady plays KEDA: sets the ScaledObject's Ready condition.
func setScaledObjectReady(t *testing.T, ns, name, status string) {
	t.Helper()
	testutil.Eventually(t, wait, "ScaledObject Ready="+status, func() error {
		so := kedaObject(render.ScaledObjectGVK)
		if err := get(ns, name, so); err != nil {
			return err
		}
		cond := map[string]any{"type": "Ready", "status": status, "reason": "ScaledObjectReady", "message": "by the test"}
		if status != "True" {
			cond["reason"], cond["message"] = "Unreachable", "redis: connection refused"
		}
		if err := unstructured.SetNestedSlice(so.Object, []any{cond}, "status", "conditions"); err != nil {
			return err
		}
		return k8s.Status().Update(context.Background(), so)
	})
}
