package controllers

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

func routedWebhook(g *v1alpha1.GatewaySpec) *v1alpha1.ResendWebhook {
	return &v1alpha1.ResendWebhook{ObjectMeta: metav1.ObjectMeta{Namespace: "mail", Name: "hooks"}, Spec: v1alpha1.ResendWebhookSpec{Gateway: g}}
}

// acceptedRoute is the rendered route with every parent accepted by its Gateway controller.
func acceptedRoute(rw *v1alpha1.ResendWebhook) *gatewayv1.HTTPRoute {
	route := render.HTTPRoute(rw, render.Options{GatewayAPI: true})
	for _, p := range route.Spec.ParentRefs {
		route.Status.Parents = append(route.Status.Parents, gatewayv1.RouteParentStatus{ParentRef: p, Conditions: []metav1.Condition{
			{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"},
			{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs"},
		}})
	}
	return route
}

func listener(name string, port int32, protocol gatewayv1.ProtocolType, hostname string) gatewayv1.Listener {
	l := gatewayv1.Listener{Name: gatewayv1.SectionName(name), Port: gatewayv1.PortNumber(port), Protocol: protocol}
	if hostname != "" {
		l.Hostname = new(gatewayv1.Hostname(hostname))
	}
	return l
}

func TestRouteURL(t *testing.T) {
	public := &gatewayv1.Gateway{
		Spec: gatewayv1.GatewaySpec{Listeners: []gatewayv1.Listener{
			listener("http", 80, gatewayv1.HTTPProtocolType, ""),
			listener("https", 443, gatewayv1.HTTPSProtocolType, "*.example.com"),
			listener("tls", 8443, gatewayv1.TLSProtocolType, ""),
			listener("alt", 8080, gatewayv1.HTTPProtocolType, "hooks.example.org"),
		}},
		Status: gatewayv1.GatewayStatus{Addresses: []gatewayv1.GatewayStatusAddress{{Value: "fd00::7"}}},
	}
	cases := []struct {
		name   string
		parent v1alpha1.GatewayParentRef
		spec   v1alpha1.GatewaySpec
		want   string
	}{
		{"hostname on the HTTPS listener", v1alpha1.GatewayParentRef{Name: "public"}, v1alpha1.GatewaySpec{Hostnames: []string{"hooks.example.com"}, Path: "/resend"}, "https://hooks.example.com/resend"},
		{"hostname only the HTTP listener takes", v1alpha1.GatewayParentRef{Name: "public"}, v1alpha1.GatewaySpec{Hostnames: []string{"hooks.other.net"}}, "http://hooks.other.net/"},
		{"section with a port of its own", v1alpha1.GatewayParentRef{Name: "public", SectionName: "alt"}, v1alpha1.GatewaySpec{}, "http://hooks.example.org:8080/"},
		{"port selects the listener", v1alpha1.GatewayParentRef{Name: "public", Port: new(int32(8080))}, v1alpha1.GatewaySpec{Hostnames: []string{"hooks.example.org"}}, "http://hooks.example.org:8080/"},
		{"no hostname, wildcard listener: the Gateway's address", v1alpha1.GatewayParentRef{Name: "public", SectionName: "https"}, v1alpha1.GatewaySpec{}, "https://[fd00::7]/"},
		{"a TLS passthrough listener is no HTTP listener", v1alpha1.GatewayParentRef{Name: "public", SectionName: "tls"}, v1alpha1.GatewaySpec{}, ""},
		{"hostname no listener of the section takes", v1alpha1.GatewayParentRef{Name: "public", SectionName: "alt"}, v1alpha1.GatewaySpec{Hostnames: []string{"hooks.example.com"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.ParentRefs = []v1alpha1.GatewayParentRef{tc.parent}
			rw := routedWebhook(&tc.spec)
			obs := routeObservation{served: true, route: acceptedRoute(rw), gateways: map[types.NamespacedName]*gatewayv1.Gateway{{Namespace: "mail", Name: "public"}: public}}
			if got := routeURL(rw, obs); got != tc.want {
				t.Errorf("routeURL = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRouteURLNeedsAnAcceptingParent(t *testing.T) {
	rw := routedWebhook(&v1alpha1.GatewaySpec{Hostnames: []string{"hooks.example.com"}, ParentRefs: []v1alpha1.GatewayParentRef{
		{Name: "refusing", Namespace: "infra"}, {Name: "public", Namespace: "infra"},
	}})
	route := acceptedRoute(rw)
	route.Status.Parents[0].Conditions[0].Status = metav1.ConditionFalse
	gw := func(port int32) *gatewayv1.Gateway {
		return &gatewayv1.Gateway{Spec: gatewayv1.GatewaySpec{Listeners: []gatewayv1.Listener{listener("https", port, gatewayv1.HTTPSProtocolType, "")}}}
	}
	obs := routeObservation{served: true, route: route, gateways: map[types.NamespacedName]*gatewayv1.Gateway{
		{Namespace: "infra", Name: "refusing"}: gw(9443), {Namespace: "infra", Name: "public"}: gw(443),
	}}
	if got := routeURL(rw, obs); got != "https://hooks.example.com/" {
		t.Errorf("routeURL = %q, want the accepting parent's https://hooks.example.com/", got)
	}
	route.Status.Parents[1].Conditions[0].Status = metav1.ConditionFalse
	if got := routeURL(rw, obs); got != "" {
		t.Errorf("routeURL = %q with no accepting parent, want none", got)
	}
	if c := routeCondition(rw, obs); c.Reason != v1alpha1.ReasonRouteNotAccepted || !strings.Contains(c.Message, "infra/refusing") || !strings.Contains(c.Message, "infra/public") {
		t.Errorf("RouteReady = %s %q, want NotAccepted naming both Gateways", c.Reason, c.Message)
	}
	// A verdict on an older generation of the route is no verdict.
	route.Generation = 2
	route.Status.Parents[0].Conditions[0].ObservedGeneration = 1
	route.Status.Parents[1].Conditions[0] = metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, ObservedGeneration: 2}
	if c := routeCondition(rw, obs); c.Reason != v1alpha1.ReasonPending || !strings.Contains(c.Message, "infra/refusing") {
		t.Errorf("RouteReady = %s %q, want Pending on infra/refusing", c.Reason, c.Message)
	}
}

func TestTenantPolicyCoversGatewayRoutes(t *testing.T) {
	p := TenantPolicy{AllowedIngressHosts: []string{"*.hooks.example.com"}, AllowedIngressAnnotationPrefixes: []string{"team/"}}
	for _, tc := range []struct {
		spec v1alpha1.GatewaySpec
		want string // "" allowed, else a part of the error
	}{
		{v1alpha1.GatewaySpec{Hostnames: []string{"mail.hooks.example.com"}, Annotations: map[string]string{"team/owner": "mail"}}, ""},
		{v1alpha1.GatewaySpec{}, "spec.gateway.hostnames (none"},
		{v1alpha1.GatewaySpec{Hostnames: []string{"mail.hooks.example.com", "shop.example.com"}}, "spec.gateway.hostnames[1] shop.example.com"},
		{v1alpha1.GatewaySpec{Hostnames: []string{"a.hooks.example.com"}, Annotations: map[string]string{"konghq.com/plugins": "x"}}, `spec.gateway.annotations key "konghq.com/plugins"`},
	} {
		err := p.Check(routedWebhook(&tc.spec))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: refused: %v", tc.spec, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: got %v, want an error with %q", tc.spec, err, tc.want)
		}
	}
}

// A disabled endpoint is re-enabled only once Resend can reach the receivers: with a Gateway,
// that includes the route being accepted.
func TestReceiversReadyWaitsForTheRoute(t *testing.T) {
	rw := routedWebhook(&v1alpha1.GatewaySpec{Hostnames: []string{"hooks.example.com"}, ParentRefs: []v1alpha1.GatewayParentRef{{Name: "public"}}})
	receiver := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: new(int32(2))}, Status: appsv1.DeploymentStatus{
		Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}},
	}}
	refused := acceptedRoute(rw)
	refused.Status.Parents[0].Conditions[0].Status = metav1.ConditionFalse
	for _, tc := range []struct {
		name     string
		receiver *appsv1.Deployment
		route    routeObservation
		want     bool
	}{
		{"receivers and route ready", receiver, routeObservation{served: true, route: acceptedRoute(rw)}, true},
		{"route refused", receiver, routeObservation{served: true, route: refused}, false},
		{"no route yet", receiver, routeObservation{served: true}, false},
		{"no receivers", nil, routeObservation{served: true, route: acceptedRoute(rw)}, false},
	} {
		if got := receiversReady(rw, observation{receiver: tc.receiver, route: tc.route}); got != tc.want {
			t.Errorf("%s: receiversReady = %v, want %v", tc.name, got, tc.want)
		}
	}
}
