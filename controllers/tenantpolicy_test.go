package controllers

import (
	"strings"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

func TestTenantPolicy(t *testing.T) {
	p := TenantPolicy{
		AllowedIngressHosts:              []string{"hooks.example.com", "*.tenants.example.com"},
		AllowedIngressAnnotationPrefixes: []string{"cert-manager.io/", "nginx.ingress.kubernetes.io/limit-"},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	with := func(host string, ann map[string]string) *v1alpha1.ResendWebhook {
		return &v1alpha1.ResendWebhook{Spec: v1alpha1.ResendWebhookSpec{Ingress: &v1alpha1.IngressSpec{Host: host, Annotations: ann}}}
	}
	for _, tc := range []struct {
		rw      *v1alpha1.ResendWebhook
		wantErr string // "" = allowed
	}{
		{&v1alpha1.ResendWebhook{}, ""},
		{with("hooks.example.com", nil), ""},
		{with("a.tenants.example.com", nil), ""},
		{with("x.a.tenants.example.com", map[string]string{"cert-manager.io/cluster-issuer": "le", "nginx.ingress.kubernetes.io/limit-rps": "5"}), ""},
		{with("tenants.example.com", nil), "spec.ingress.host tenants.example.com is not allowed by the operator's --allowed-ingress-hosts"},
		{with("evil-hooks.example.com", nil), "--allowed-ingress-hosts"},
		{with("shop.other-team.example.com", nil), "shop.other-team.example.com"},
		{with("", nil), "(none: every host)"},
		{with("hooks.example.com", map[string]string{"nginx.ingress.kubernetes.io/server-snippet": "x"}),
			`spec.ingress.annotations key "nginx.ingress.kubernetes.io/server-snippet" is not allowed by the operator's --allowed-ingress-annotation-prefixes`},
	} {
		err := p.Check(tc.rw)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tc.rw.Spec.Ingress, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v: error %v, want one containing %q", tc.rw.Spec.Ingress, err, tc.wantErr)
		}
	}
	if err := (TenantPolicy{}).Check(with("", map[string]string{"x": "y"})); err != nil {
		t.Errorf("the zero policy refused: %v", err)
	}
	for _, bad := range []TenantPolicy{
		{AllowedIngressHosts: []string{"*"}},
		{AllowedIngressHosts: []string{"*.*.example.com"}},
		{AllowedIngressHosts: []string{"https://hooks.example.com"}},
		{AllowedIngressAnnotationPrefixes: []string{""}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}
