package render

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// Children is everything one ResendWebhook needs in the cluster.
type Children struct {
	// Present are the objects to apply, in dependency order (Service before Ingress, …).
	Present []client.Object
	// Absent are optional objects the spec does not ask for (only kind, name and namespace are
	// set); any such object this webhook controls must be deleted.
	Absent []client.Object
}

// All renders every child object of rw.
func All(rw *v1alpha1.ResendWebhook, o Options) Children {
	var c Children
	c.Present = append(c.Present, ReceiverDeployment(rw, o), ReceiverService(rw))
	// Each optional child: present when rendered, otherwise an empty object of its kind. Kinds
	// the cluster does not serve are left out altogether (there is nothing to delete).
	optional := []struct {
		obj    client.Object
		empty  client.Object
		name   string
		served bool
	}{
		{asObject(WorkerDeployment(rw, o)), &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}}, WorkerName(rw), true},
		{asObject(Ingress(rw)), &networkingv1.Ingress{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}, IngressName(rw), true},
		{asObject(HTTPRoute(rw, o)), &gatewayv1.HTTPRoute{TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"}}, RouteName(rw), o.GatewayAPI},
		{asObject(PodDisruptionBudget(rw)), &policyv1.PodDisruptionBudget{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"}}, ReceiverName(rw), true},
		{asObject(HorizontalPodAutoscaler(rw)), &autoscalingv2.HorizontalPodAutoscaler{TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"}}, ReceiverName(rw), true},
		// The TriggerAuthentication before the ScaledObject that refers to it.
		{asObject(TriggerAuthentication(rw, o)), emptyUnstructured(TriggerAuthenticationGVK), ScalerName(rw), o.KEDA},
		{asObject(ScaledObject(rw, o)), emptyUnstructured(ScaledObjectGVK), ScalerName(rw), o.KEDA},
	}
	for _, opt := range optional {
		if !opt.served {
			continue
		}
		if opt.obj != nil {
			c.Present = append(c.Present, opt.obj)
			continue
		}
		opt.empty.SetName(opt.name)
		opt.empty.SetNamespace(rw.Namespace)
		c.Absent = append(c.Absent, opt.empty)
	}
	return c
}

func emptyUnstructured(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// asObject turns a typed nil pointer into a nil interface.
func asObject[T any, P interface {
	*T
	client.Object
}](p P) client.Object {
	if p == nil {
		return nil
	}
	return p
}

// ApplyObject is obj as the server-side apply request body: status and null fields (such as
// creationTimestamp) are left out, so the operator owns exactly the fields it means to set.
func ApplyObject(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	pruneNulls(m)
	return &unstructured.Unstructured{Object: m}, nil
}

func pruneNulls(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				delete(v, k)
				continue
			}
			pruneNulls(x)
		}
	case []any:
		for _, x := range v {
			pruneNulls(x)
		}
	}
}
