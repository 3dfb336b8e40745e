package nodeagent

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMatchIngress(t *testing.T) {
	prefix := networkingv1.PathTypePrefix
	rule := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
	}
	path := func(p string, svc string) networkingv1.HTTPIngressPath {
		return networkingv1.HTTPIngressPath{Path: p, PathType: &prefix, Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}}
	}
	ings := []networkingv1.Ingress{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "hooks"}, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("", path("/", "anyhost"), path("/deep/er", "anyhost-deeper")),
			rule("hooks.example.com", path("/", "root"), path("/resend", "resend")),
		}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "other"}, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("other.example.com", path("/in", "other")),
		}}},
	}
	for _, c := range []struct{ host, path, want string }{
		{"hooks.example.com", "/", "a/root"},
		{"HOOKS.example.com:8080", "/resend", "a/resend"},
		{"hooks.example.com", "/resend/x", "a/resend"},
		{"hooks.example.com", "/resendx", "a/root"},      // element-wise prefix
		{"hooks.example.com", "/deep/er", "a/root"},      // a rule for the host beats a longer path without host
		{"other.example.com", "/in/x", "b/other"},        // another namespace's Ingress
		{"other.example.com", "/elsewhere", "a/anyhost"}, // no path of the host's rule: the rule without host
		{"elsewhere", "/deep/er/x", "a/anyhost-deeper"},
	} {
		ns, b, ok := matchIngress(ings, c.host, c.path)
		if got := ns + "/" + b.Name; !ok || got != c.want {
			t.Errorf("%s%s → %s (ok=%v), want %s", c.host, c.path, got, ok, c.want)
		}
	}
	if _, _, ok := matchIngress(ings[1:], "elsewhere", "/in"); ok {
		t.Error("matched without any fitting rule")
	}
}
