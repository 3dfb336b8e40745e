package nodeagent

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMatchIngress(t *testing.T) {
	prefix, exact := networkingv1.PathTypePrefix, networkingv1.PathTypeExact
	rule := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
	}
	path := func(p string, pt *networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
		return networkingv1.HTTPIngressPath{Path: p, PathType: pt, Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}}
	}
	ings := []networkingv1.Ingress{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "hooks"}, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("hooks.example.com", path("/", &prefix, "root"), path("/resend", &prefix, "resend"), path("/resend/exact", &exact, "exact")),
			rule("*.example.com", path("/", &prefix, "wildcard")),
			rule("", path("/any", &prefix, "anyhost")),
		}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "fallback"}, Spec: networkingv1.IngressSpec{
			DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "default"}}}},
	}
	for _, c := range []struct{ host, path, want string }{
		{"hooks.example.com", "/", "a/root"},
		{"HOOKS.example.com:8080", "/resend", "a/resend"},
		{"hooks.example.com", "/resend/x", "a/resend"},
		{"hooks.example.com", "/resendx", "a/root"}, // element-wise prefix
		{"hooks.example.com", "/resend/exact", "a/exact"},
		{"hooks.example.com", "/resend/exact/more", "a/resend"},
		{"other.example.com", "/any", "a/wildcard"}, // a matching wildcard host beats rules without host
		{"a.b.example.com", "/any", "a/anyhost"},    // the wildcard covers one label only
		{"elsewhere", "/nothing", "b/default"},
	} {
		ns, b, ok := matchIngress(ings, c.host, c.path)
		if got := ns + "/" + b.Name; !ok || got != c.want {
			t.Errorf("%s%s → %s (ok=%v), want %s", c.host, c.path, got, ok, c.want)
		}
	}
	if _, _, ok := matchIngress(ings[:1], "elsewhere", "/nothing"); ok {
		t.Error("matched without any fitting rule or default backend")
	}
}
