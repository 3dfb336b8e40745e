package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The manager's tenant flags: a webhook asking for another team's host or a forbidden Ingress
// annotation applies nothing new and says which value and which flag, with one Event.
func TestTenantPolicyFlags(t *testing.T) {
	useDedicatedManager(t, func(o *manager.Options) {
		o.Controller.Policy = controllers.TenantPolicy{
			AllowedIngressHosts:              []string{"*.hooks.example.com"},
			AllowedIngressAnnotationPrefixes: []string{"cert-manager.io/"},
		}
	})
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "shop.other-team.example.com"}
	mustCreate(t, rw)
	c := waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPolicyViolation)
	for _, want := range []string{"shop.other-team.example.com", "--allowed-ingress-hosts"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("Ready message %q lacks %q", c.Message, want)
		}
	}
	testutil.Eventually(t, wait, "PolicyViolation event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonPolicyViolation) })
	assertAbsent(t, ns, "hooks-receiver", &appsv1.Deployment{}) // nothing was applied
	assertAbsent(t, ns, "hooks", &networkingv1.Ingress{})

	// An allowed host: everything is applied.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Ingress.Host = "mail.hooks.example.com"
		rw.Spec.Ingress.Annotations = map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}
	})
	var ing networkingv1.Ingress
	waitFor(t, ns, "hooks", &ing)
	waitFor(t, ns, "hooks-receiver", &appsv1.Deployment{})
	// The allowed spec is reported before the next violation, so that one is a new transition.
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady)

	// A forbidden annotation on the live webhook: nothing new is applied, the Ingress stays.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Ingress.Annotations["nginx.ingress.kubernetes.io/server-snippet"] = "return 200;"
		rw.Spec.Retry.MaxAttempts = new(int32(9))
	})
	c = waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPolicyViolation)
	if !strings.Contains(c.Message, `"nginx.ingress.kubernetes.io/server-snippet"`) || !strings.Contains(c.Message, "--allowed-ingress-annotation-prefixes") {
		t.Errorf("Ready message %q", c.Message)
	}
	var after networkingv1.Ingress
	if err := get(ns, "hooks", &after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != ing.ResourceVersion || after.Annotations["nginx.ingress.kubernetes.io/server-snippet"] != "" {
		t.Errorf("the Ingress changed under a policy violation: %v", after.Annotations)
	}
	var d appsv1.Deployment
	if err := get(ns, "hooks-receiver", &d); err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(args, "--max-attempts=9") {
		t.Errorf("the receivers got the violating spec: %s", args)
	}
	testutil.Eventually(t, wait, "a second PolicyViolation event for the new violation", func() error {
		if n := countEvents(t, ns, v1alpha1.ReasonPolicyViolation); n != 2 {
			return fmt.Errorf("%d PolicyViolation events", n)
		}
		return nil
	})
}

// The sample ValidatingAdmissionPolicy of config/policy refuses the same webhooks at admission.
// The test binds it to its own namespace only (the sample binds it cluster-wide).
func TestValidatingAdmissionPolicySample(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	var params corev1.ConfigMap
	var policy admissionregistrationv1.ValidatingAdmissionPolicy
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	readConfig(t, "config/policy/params.yaml", &params)
	readConfig(t, "config/policy/policy.yaml", &policy)
	readConfig(t, "config/policy/binding.yaml", &binding)
	suffix := "-" + ns
	params.Namespace = ns
	policy.Name += suffix
	binding.Name += suffix
	binding.Spec.PolicyName = policy.Name
	binding.Spec.ParamRef.Namespace = ns
	binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
	}
	for _, obj := range []client.Object{&params, &policy, &binding} {
		mustCreate(t, obj)
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}

	mk := func(host string, ann map[string]string) *v1alpha1.ResendWebhook {
		rw := webhook(ns, "hooks", "redis://127.0.0.1:1/0")
		rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: host, Annotations: ann}
		return rw
	}
	route := func(hosts []string, ann map[string]string) *v1alpha1.ResendWebhook {
		rw := webhook(ns, "hooks", "redis://127.0.0.1:1/0")
		rw.Spec.Gateway = &v1alpha1.GatewaySpec{ParentRefs: []v1alpha1.GatewayParentRef{{Name: "public"}}, Hostnames: hosts, Annotations: ann}
		return rw
	}
	dryRun := func(rw *v1alpha1.ResendWebhook) error { return k8s.Create(ctx, rw, client.DryRunAll) }
	// The policy takes effect once the API server has compiled it: poll with a violating object.
	testutil.Eventually(t, wait, "policy in force", func() error {
		if err := dryRun(mk("shop.other-team.example.com", nil)); err == nil {
			return errors.New("not denied yet")
		}
		return nil
	})
	for _, tc := range []struct {
		rw      *v1alpha1.ResendWebhook
		wantErr string
	}{
		{mk("mail.hooks.example.com", map[string]string{"cert-manager.io/cluster-issuer": "le", "nginx.ingress.kubernetes.io/limit-rps": "5"}), ""},
		{webhook(ns, "hooks", "redis://127.0.0.1:1/0"), ""}, // no Ingress
		{mk("shop.other-team.example.com", nil), "spec.ingress.host shop.other-team.example.com is not allowed; allowed host patterns: *.hooks.example.com"},
		{mk("hooks.example.com", nil), "spec.ingress.host hooks.example.com is not allowed"},
		{mk("", nil), "spec.ingress.host (none: every host) is not allowed"},
		{mk("mail.hooks.example.com", map[string]string{"nginx.ingress.kubernetes.io/server-snippet": "x"}),
			"spec.ingress.annotations key nginx.ingress.kubernetes.io/server-snippet is not allowed; allowed key prefixes: cert-manager.io/,nginx.ingress.kubernetes.io/limit-"},
		{route([]string{"mail.hooks.example.com"}, map[string]string{"cert-manager.io/issuer": "le"}), ""},
		{route([]string{"mail.hooks.example.com", "shop.example.com"}, nil), "spec.gateway.hostnames shop.example.com is not allowed; allowed host patterns: *.hooks.example.com"},
		{route(nil, nil), "spec.gateway.hostnames (none: every host of the Gateway) is not allowed"},
		{route([]string{"mail.hooks.example.com"}, map[string]string{"konghq.com/plugins": "x"}), "spec.gateway.annotations key konghq.com/plugins is not allowed"},
	} {
		err := dryRun(tc.rw)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v %+v refused: %v", tc.rw.Spec.Ingress, tc.rw.Spec.Gateway, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v %+v: %v, want an error containing %q", tc.rw.Spec.Ingress, tc.rw.Spec.Gateway, err, tc.wantErr)
		}
	}
}

// readConfig reads one object from a YAML file of the repository.
func readConfig(t *testing.T, rel string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}
