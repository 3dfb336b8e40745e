package render_test

import (
	"slices"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// signingItems are the keys the receivers' signing volume projects.
func signingItems(rw *v1alpha1.ResendWebhook) []string {
	for _, v := range render.ReceiverDeployment(rw, opts).Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			var keys []string
			for _, it := range v.Projected.Sources[0].Secret.Items {
				keys = append(keys, it.Key)
			}
			return keys
		}
	}
	return nil
}

func TestResendProjectsThePreviousSecret(t *testing.T) {
	rw := Minimal()
	if got := signingItems(rw); !slices.Equal(got, []string{"signing-secret"}) {
		t.Errorf("without spec.resend: %v", got)
	}
	rw.Spec.Resend = &v1alpha1.ResendSpec{APIKeySecretRef: v1alpha1.APIKeySecretRef{Name: "api"}}
	if got := signingItems(rw); !slices.Equal(got, []string{"signing-secret", "signing-secret.previous"}) {
		t.Errorf("with spec.resend: %v", got)
	}
	rw.Spec.SigningSecret.Keys = []string{"a", "a.previous"}
	if got := signingItems(rw); !slices.Equal(got, []string{"a", "a.previous"}) {
		t.Errorf("previous key listed already: %v (no duplicate item)", got)
	}
	if slices.Contains(rw.Spec.SigningSecret.Keys, "") || len(rw.Spec.SigningSecret.Keys) != 2 {
		t.Errorf("rendering changed the input: %v", rw.Spec.SigningSecret.Keys)
	}
}
