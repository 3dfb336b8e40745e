package render

import (
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// RouteName is the name of the HTTPRoute.
func RouteName(rw *v1alpha1.ResendWebhook) string { return rw.Name }

// HTTPRoute routes the public endpoint from the spec's Gateways to the receiver Service; nil
// without spec.gateway, or when the cluster does not serve the Gateway API (Options.GatewayAPI).
func HTTPRoute(rw *v1alpha1.ResendWebhook, o Options) *gatewayv1.HTTPRoute {
	rw = defaulted(rw)
	g := rw.Spec.Gateway
	if g == nil || !o.GatewayAPI {
		return nil
	}
	meta := objectMeta(rw, RouteName(rw), ComponentReceiver)
	if len(g.Annotations) > 0 {
		meta.Annotations = maps.Clone(g.Annotations)
	}
	route := &gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: meta,
		Spec: gatewayv1.HTTPRouteSpec{
			Rules: []gatewayv1.HTTPRouteRule{{
				Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
					Type:  new(gatewayv1.PathMatchPathPrefix),
					Value: new(g.Path),
				}}},
				BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{
						Group: new(gatewayv1.Group("")),
						Kind:  new(gatewayv1.Kind("Service")),
						Name:  gatewayv1.ObjectName(ReceiverName(rw)),
						Port:  new(gatewayv1.PortNumber(ServicePort)),
					},
				}}},
			}},
		},
	}
	for _, p := range g.ParentRefs {
		route.Spec.ParentRefs = append(route.Spec.ParentRefs, ParentReference(p))
	}
	for _, h := range g.Hostnames {
		route.Spec.Hostnames = append(route.Spec.Hostnames, gatewayv1.Hostname(h))
	}
	return route
}

// ParentReference is the Gateway API form of a spec parent: group and kind spelled out (they are
// the API server's defaults), namespace, section and port only when set.
func ParentReference(p v1alpha1.GatewayParentRef) gatewayv1.ParentReference {
	ref := gatewayv1.ParentReference{
		Group: new(gatewayv1.Group(gatewayv1.GroupName)),
		Kind:  new(gatewayv1.Kind("Gateway")),
		Name:  gatewayv1.ObjectName(p.Name),
	}
	if p.Namespace != "" {
		ref.Namespace = new(gatewayv1.Namespace(p.Namespace))
	}
	if p.SectionName != "" {
		ref.SectionName = new(gatewayv1.SectionName(p.SectionName))
	}
	if p.Port != nil {
		ref.Port = new(gatewayv1.PortNumber(*p.Port))
	}
	return ref
}
