package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// optionalAPI is an API the operator uses only where the cluster serves it: the Gateway API's
// HTTPRoute, KEDA's ScaledObject and TriggerAuthentication. The operator runs without them;
// a webhook asking for one that is missing gets a condition saying so. Whether the kinds are
// served is asked of the RESTMapper; a miss costs it a discovery request, so absence is looked
// up again at most once per recheck period. Once found, the kinds are watched (owned by the
// webhooks) without a restart of the operator.
type optionalAPI struct {
	name    string          // for logs
	kinds   []client.Object // typed, or unstructured with their GVK set
	scheme  *runtime.Scheme
	mapper  meta.RESTMapper
	recheck time.Duration
	watch   func(client.Object) error // starts the watch of one kind

	mu        sync.Mutex
	served    bool
	watched   int // kinds[:watched] are watched
	checkedAt time.Time
}

// available reports whether every kind of the API is served, and starts their watches the
// first time it is. A nil API (a Reconciler built without SetupWithManager) is never served.
func (a *optionalAPI) available(ctx context.Context) bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.served {
		return true
	}
	if !a.checkedAt.IsZero() && time.Since(a.checkedAt) < a.recheck {
		return false
	}
	a.checkedAt = time.Now()
	log := ctrl.LoggerFrom(ctx).WithValues("api", a.name)
	for _, k := range a.kinds {
		gvk, err := apiutil.GVKForObject(k, a.scheme)
		if err == nil {
			_, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			if !meta.IsNoMatchError(err) {
				log.V(1).Info("optional API not usable", "kind", gvk.Kind, "error", err.Error())
			}
			return false
		}
	}
	for ; a.watched < len(a.kinds); a.watched++ {
		if err := a.watch(a.kinds[a.watched]); err != nil {
			log.Error(err, "watching an optional API's kind; retried later")
			return false
		}
	}
	a.served = true
	log.Info("optional API found: its objects are applied and watched")
	return true
}

// optionalAPIs are the optional APIs the reconciler uses.
type optionalAPIs struct {
	gatewayAPI, keda *optionalAPI
}

// servedAPIs says which optional APIs the cluster serves.
type servedAPIs struct {
	gatewayAPI, keda bool
}

func (o optionalAPIs) served(ctx context.Context) servedAPIs {
	return servedAPIs{gatewayAPI: o.gatewayAPI.available(ctx), keda: o.keda.available(ctx)}
}

// newOptionalAPIs describes the Gateway API and KEDA for mgr; watch starts the owner-based watch
// of one kind on the controller.
func newOptionalAPIs(mgr ctrl.Manager, recheck time.Duration, watch func(client.Object) error) optionalAPIs {
	api := func(name string, kinds ...client.Object) *optionalAPI {
		return &optionalAPI{name: name, kinds: kinds, scheme: mgr.GetScheme(), mapper: mgr.GetRESTMapper(), recheck: recheck, watch: watch}
	}
	kedaKind := func(gvk schema.GroupVersionKind) client.Object {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		return u
	}
	return optionalAPIs{
		gatewayAPI: api("gateway.networking.k8s.io/v1", &gatewayv1.HTTPRoute{}),
		keda:       api("keda.sh/v1alpha1", kedaKind(render.ScaledObjectGVK), kedaKind(render.TriggerAuthenticationGVK)),
	}
}
