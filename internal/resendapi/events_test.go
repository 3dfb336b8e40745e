package resendapi_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The CRD's enum of spec.events (a marker on api/v1alpha1.EventType) and EventTypes, which
// "every event type" means when registering at Resend, must list the same types.
func TestEventTypesMatchTheCRD(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "config", "crd", "bases", "webhooks.resend-operator.dev_resendwebhooks.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema struct {
						Properties struct {
							Spec struct {
								Properties struct {
									Events struct {
										Items struct {
											Enum []string `json:"enum"`
										} `json:"items"`
									} `json:"events"`
								} `json:"properties"`
							} `json:"spec"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil || len(crd.Spec.Versions) != 1 {
		t.Fatalf("reading the CRD: %v (%d versions)", err, len(crd.Spec.Versions))
	}
	enum := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties.Spec.Properties.Events.Items.Enum
	if !slices.Equal(slices.Sorted(slices.Values(enum)), slices.Sorted(slices.Values(resendapi.EventTypes))) {
		t.Errorf("the CRD allows event types %v, resendapi.EventTypes lists %v", enum, resendapi.EventTypes)
	}
}
