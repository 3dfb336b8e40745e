package render_test

import (
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

func TestSecretRefsListsEveryReference(t *testing.T) {
	rw := Full()
	rw.Spec.Resend = &v1alpha1.ResendSpec{APIKeySecretRef: v1alpha1.APIKeySecretRef{Name: "api"}} // key defaulted
	var got []string
	for _, r := range render.SecretRefs(rw) {
		got = append(got, fmt.Sprintf("%s:%s%v required=%v", r.Role, r.Name, r.Keys, r.Required()))
	}
	want := []string{
		"signing:resend-signing[current next current.previous] required=false",
		"Redis password:redis[password] required=true",
		"Redis CA:redis-ca[ca.pem] required=true",
		"sink signing:sink[secret] required=true",
		"Resend API key:api[api-key] required=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("SecretRefs(full + resend) =\n%q\nwant\n%q", got, want)
	}
	if refs := render.SecretRefs(Minimal()); len(refs) != 1 || refs[0].Role != render.SecretSigning || !slices.Equal(refs[0].Keys, []string{"signing-secret"}) {
		t.Errorf("SecretRefs(minimal) = %+v, want the signing Secret's default key only", refs)
	}
}

// The Deployments mount exactly the Secrets of SecretRefs that are not the operator's own
// reading (the API key) — the volumes derive from the one list.
func TestDeploymentsMountTheReferencedSecrets(t *testing.T) {
	rw := Full()
	rw.Spec.Resend = &v1alpha1.ResendSpec{APIKeySecretRef: v1alpha1.APIKeySecretRef{Name: "api"}}
	rw.Spec.Worker.Volumes = nil // the user's own volumes are not references of the webhook
	mounted := map[string][]string{}
	for _, dep := range []*appsv1.Deployment{render.ReceiverDeployment(rw, opts), render.WorkerDeployment(rw, opts)} {
		for _, v := range dep.Spec.Template.Spec.Volumes {
			switch {
			case v.Secret != nil:
				mounted[v.Secret.SecretName] = append(mounted[v.Secret.SecretName], v.Secret.Items[0].Key)
			case v.Projected != nil:
				for _, it := range v.Projected.Sources[0].Secret.Items {
					mounted[v.Projected.Sources[0].Secret.Name] = append(mounted[v.Projected.Sources[0].Secret.Name], it.Key)
				}
			}
		}
	}
	want := map[string][]string{}
	for _, r := range render.SecretRefs(rw) {
		if r.Role == render.SecretResendAPIKey {
			continue
		}
		want[r.Name] = r.Keys
		if r.Role == render.SecretRedisPassword || r.Role == render.SecretRedisCA { // both components
			want[r.Name] = append(slices.Clone(r.Keys), r.Keys...)
		}
	}
	if fmt.Sprint(mounted) != fmt.Sprint(want) {
		t.Errorf("mounted Secret keys %v, want %v", mounted, want)
	}
}
