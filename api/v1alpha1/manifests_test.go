package v1alpha1_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func readYAML(t *testing.T, rel string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// crdFile mirrors the parts of the generated CRD this test checks.
type crdFile struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"names"`
		Scope    string `json:"scope"`
		Versions []struct {
			Name                     string `json:"name"`
			AdditionalPrinterColumns []struct {
				Name     string `json:"name"`
				Priority int    `json:"priority"`
			} `json:"additionalPrinterColumns"`
			Subresources map[string]any `json:"subresources"`
		} `json:"versions"`
	} `json:"spec"`
}

// TestCRDManifest checks the generated CRD for what the issue promises users: short name,
// category, printer columns, status subresource, and a fair number of CEL rules.
func TestCRDManifest(t *testing.T) {
	const rel = "config/crd/bases/webhooks.resend-operator.dev_resendwebhooks.yaml"
	var crd crdFile
	readYAML(t, rel, &crd)
	s := crd.Spec
	if s.Group != webhooksv1alpha1.GroupVersion.Group || s.Names.Kind != "ResendWebhook" || s.Scope != "Namespaced" {
		t.Errorf("group/kind/scope = %s/%s/%s", s.Group, s.Names.Kind, s.Scope)
	}
	if !slices.Contains(s.Names.ShortNames, "rwh") || !slices.Contains(s.Names.Categories, "resend") {
		t.Errorf("shortNames %v, categories %v; want rwh and resend", s.Names.ShortNames, s.Names.Categories)
	}
	if len(s.Versions) != 1 || s.Versions[0].Name != webhooksv1alpha1.GroupVersion.Version {
		t.Fatalf("versions = %+v", s.Versions)
	}
	// The default columns are a contract; extra columns only show with -o wide (priority 1).
	var columns, wide []string
	for _, c := range s.Versions[0].AdditionalPrinterColumns {
		if c.Priority == 0 {
			columns = append(columns, c.Name)
		} else {
			wide = append(wide, c.Name)
		}
	}
	if want := []string{"Ready", "URL", "Queue", "Pending", "Dead", "Age"}; !slices.Equal(columns, want) {
		t.Errorf("printer columns = %v, want %v", columns, want)
	}
	if want := []string{"Reason"}; !slices.Equal(wide, want) {
		t.Errorf("-o wide printer columns = %v, want %v", wide, want)
	}
	if _, ok := s.Versions[0].Subresources["status"]; !ok {
		t.Error("status subresource missing")
	}
	raw, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "- message:"); n < 5 {
		t.Errorf("CRD has %d x-kubernetes-validations rules, want at least 5", n)
	}
	// gofmt rewrites two adjacent single quotes in doc comments into a typographic quote; in a
	// CEL rule that breaks the CRD at install time.
	if strings.ContainsAny(string(raw), "\u201c\u201d") {
		t.Error("CRD contains typographic quotes (a CEL rule mangled by gofmt?)")
	}
}

// TestPROJECTDescribesTheAPI keeps the kubebuilder PROJECT file in step with the Go API.
func TestPROJECTDescribesTheAPI(t *testing.T) {
	var project struct {
		Domain    string   `json:"domain"`
		Layout    []string `json:"layout"`
		Repo      string   `json:"repo"`
		Resources []struct {
			API struct {
				Namespaced bool `json:"namespaced"`
			} `json:"api"`
			Domain  string `json:"domain"`
			Group   string `json:"group"`
			Kind    string `json:"kind"`
			Path    string `json:"path"`
			Version string `json:"version"`
		} `json:"resources"`
	}
	readYAML(t, "PROJECT", &project)
	if len(project.Resources) != 1 {
		t.Fatalf("PROJECT lists %d resources, want 1", len(project.Resources))
	}
	r := project.Resources[0]
	gv := webhooksv1alpha1.GroupVersion
	if got := r.Group + "." + r.Domain; got != gv.Group || r.Version != gv.Version || r.Kind != "ResendWebhook" || !r.API.Namespaced {
		t.Errorf("PROJECT resource %s/%s %s (namespaced %v) does not match %s", got, r.Version, r.Kind, r.API.Namespaced, gv)
	}
	if want := project.Repo + "/api/v1alpha1"; r.Path != want {
		t.Errorf("PROJECT path %q, want %q", r.Path, want)
	}
}
