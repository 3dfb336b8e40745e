package controllers

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// The HTTPRoute is watched like the other children; the Gateways it attaches to are read (never
// written) for status.url. Gateways are read across namespaces: a shared Gateway usually lives in
// the platform team's namespace.
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways,verbs=get;list;watch

// routeObservation is what a reconcile saw of the webhook's HTTPRoute.
type routeObservation struct {
	served   bool                 // the cluster serves the Gateway API
	route    *gatewayv1.HTTPRoute // nil: no HTTPRoute controlled by the webhook
	gateways map[types.NamespacedName]*gatewayv1.Gateway
}

// observeRoute reads the HTTPRoute and the Gateways of spec.gateway.parentRefs. A Gateway that
// cannot be read only leaves status.url empty.
func (r *Reconciler) observeRoute(ctx context.Context, rw *v1alpha1.ResendWebhook, served bool) (routeObservation, error) {
	obs := routeObservation{served: served}
	if rw.Spec.Gateway == nil || !served {
		return obs, nil
	}
	var err error
	if obs.route, err = getControlled[gatewayv1.HTTPRoute](ctx, r.client, rw, render.RouteName(rw)); err != nil || obs.route == nil {
		return obs, err
	}
	obs.gateways = map[types.NamespacedName]*gatewayv1.Gateway{}
	for _, p := range rw.Spec.Gateway.ParentRefs {
		key := parentKey(rw, p)
		if _, seen := obs.gateways[key]; seen {
			continue
		}
		var gw gatewayv1.Gateway
		// The cache covers the watched namespaces only (--watch-namespaces); a Gateway elsewhere
		// is read directly.
		err := r.client.Get(ctx, key, &gw)
		if err != nil && !apierrors.IsNotFound(err) {
			err = r.apiReader.Get(ctx, key, &gw)
		}
		if err == nil {
			obs.gateways[key] = &gw
		}
	}
	return obs, nil
}

func parentKey(rw *v1alpha1.ResendWebhook, p v1alpha1.GatewayParentRef) types.NamespacedName {
	return types.NamespacedName{Namespace: cmp.Or(p.Namespace, rw.Namespace), Name: p.Name}
}

// parentStatus is the route's status for the spec parent p, as reported by a Gateway controller.
func parentStatus(rw *v1alpha1.ResendWebhook, route *gatewayv1.HTTPRoute, p v1alpha1.GatewayParentRef) *gatewayv1.RouteParentStatus {
	for i, s := range route.Status.Parents {
		ref := s.ParentRef
		ns := rw.Namespace // a parent reference without namespace is in the route's
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if string(ref.Name) != p.Name || ns != cmp.Or(p.Namespace, rw.Namespace) ||
			string(ptrValue(ref.SectionName)) != p.SectionName ||
			int32(ptrValue(ref.Port)) != ptrValue(p.Port) {
			continue
		}
		return &route.Status.Parents[i]
	}
	return nil
}

func ptrValue[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// routeCondition is RouteReady: every parent Gateway accepted the current route and resolved its
// backend. A refusal is the most urgent news, then unresolved references, then silence.
func routeCondition(rw *v1alpha1.ResendWebhook, obs routeObservation) metav1.Condition {
	typ := v1alpha1.ConditionRouteReady
	switch {
	case !obs.served:
		return *falseCond(typ, v1alpha1.ReasonGatewayAPIAbsent,
			"the cluster does not serve gateway.networking.k8s.io/v1 HTTPRoute: install the Gateway API CRDs and a Gateway controller, or use spec.ingress")
	case obs.route == nil:
		return *falseCond(typ, v1alpha1.ReasonRouteMissing, "no HTTPRoute controlled by this ResendWebhook exists yet")
	}
	var notAccepted, unresolved, pending, accepted []string
	for _, p := range rw.Spec.Gateway.ParentRefs {
		name := parentKey(rw, p).String()
		st := parentStatus(rw, obs.route, p)
		if st == nil {
			pending = append(pending, name)
			continue
		}
		acc := meta.FindStatusCondition(st.Conditions, string(gatewayv1.RouteConditionAccepted))
		refs := meta.FindStatusCondition(st.Conditions, string(gatewayv1.RouteConditionResolvedRefs))
		switch {
		case acc == nil || acc.ObservedGeneration < obs.route.Generation || acc.Status == metav1.ConditionUnknown:
			pending = append(pending, name)
		case acc.Status == metav1.ConditionFalse:
			notAccepted = append(notAccepted, fmt.Sprintf("Gateway %s: %s: %s", name, bounded.Text(acc.Reason, 64), bounded.Text(acc.Message, 256)))
		case refs != nil && refs.Status == metav1.ConditionFalse:
			unresolved = append(unresolved, fmt.Sprintf("Gateway %s: %s: %s", name, bounded.Text(refs.Reason, 64), bounded.Text(refs.Message, 256)))
		default:
			accepted = append(accepted, name)
		}
	}
	switch {
	case len(notAccepted) > 0:
		return *falseCond(typ, v1alpha1.ReasonRouteNotAccepted, "the HTTPRoute is not accepted by "+strings.Join(notAccepted, "; "))
	case len(unresolved) > 0:
		return *falseCond(typ, v1alpha1.ReasonRefsNotResolved, "the receiver Service is not resolved by "+strings.Join(unresolved, "; "))
	case len(pending) > 0:
		return *falseCond(typ, v1alpha1.ReasonPending, "waiting for the controller of Gateway "+strings.Join(pending, ", ")+" to accept the current HTTPRoute")
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRouteAccepted,
		Message: "the HTTPRoute is accepted by Gateway " + strings.Join(accepted, ", ")}
}

// routeURL is where Resend must post through the Gateway: the first parent that accepted the
// route, on the listener the route uses there; the host is the first spec hostname, else the
// listener's exact hostname, else the Gateway's first address. Empty until one is known.
func routeURL(rw *v1alpha1.ResendWebhook, obs routeObservation) string {
	g := rw.Spec.Gateway
	if g == nil || obs.route == nil {
		return ""
	}
	host := ""
	if len(g.Hostnames) > 0 {
		host = g.Hostnames[0]
	}
	for _, p := range g.ParentRefs {
		st := parentStatus(rw, obs.route, p)
		gw := obs.gateways[parentKey(rw, p)]
		if st == nil || gw == nil || !meta.IsStatusConditionTrue(st.Conditions, string(gatewayv1.RouteConditionAccepted)) {
			continue
		}
		l := routeListener(gw, p, host)
		if l == nil {
			continue
		}
		h := host
		if h == "" && l.Hostname != nil && !strings.HasPrefix(string(*l.Hostname), "*") {
			h = string(*l.Hostname)
		}
		if h == "" {
			h = gatewayAddress(gw)
		}
		if h == "" {
			continue
		}
		scheme, defaultPort := "http", gatewayv1.PortNumber(80)
		if l.Protocol == gatewayv1.HTTPSProtocolType {
			scheme, defaultPort = "https", 443
		}
		if l.Port != defaultPort {
			h = net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(int(l.Port)))
		}
		return scheme + "://" + h + cmp.Or(g.Path, v1alpha1.DefaultGatewayPath)
	}
	return ""
}

// routeListener is the HTTP(S) listener of gw the route is served on for host: the one the parent
// reference names (section or port), else the first that takes the host, HTTPS first.
func routeListener(gw *gatewayv1.Gateway, p v1alpha1.GatewayParentRef, host string) *gatewayv1.Listener {
	var candidates []*gatewayv1.Listener
	for i := range gw.Spec.Listeners {
		l := &gw.Spec.Listeners[i]
		if (l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType) ||
			(p.SectionName != "" && string(l.Name) != p.SectionName) ||
			(p.Port != nil && int32(l.Port) != *p.Port) ||
			(host != "" && l.Hostname != nil && !hostnameMatches(string(*l.Hostname), host)) {
			continue
		}
		candidates = append(candidates, l)
	}
	httpsFirst := func(l *gatewayv1.Listener) int {
		if l.Protocol == gatewayv1.HTTPSProtocolType {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(candidates, func(a, b *gatewayv1.Listener) int { return cmp.Compare(httpsFirst(a), httpsFirst(b)) })
	if len(candidates) == 0 {
		return nil
	}
	return candidates[0]
}

// hostnameMatches applies the Gateway API's listener hostname rule: exact, or "*.domain" for
// any host with at least one more label.
func hostnameMatches(listener, host string) bool {
	if domain, ok := strings.CutPrefix(listener, "*."); ok {
		return strings.HasSuffix(host, "."+domain)
	}
	return listener == host
}

// gatewayAddress is the Gateway's first address as a URL host.
func gatewayAddress(gw *gatewayv1.Gateway) string {
	for _, a := range gw.Status.Addresses {
		v := bounded.Text(a.Value, 253)
		if v == "" {
			continue
		}
		if strings.Contains(v, ":") {
			return "[" + v + "]"
		}
		return v
	}
	return ""
}
