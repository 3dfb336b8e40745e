// Package charts_test checks the Helm chart the way an API server and a platform team would:
// helm lint, the chart's copies of config/ being current, the chart rendering the same objects as
// the kustomize release manifests (no drift), and every object the chart, dist/install.yaml and
// config/{prometheus,grafana} render being accepted by a real API server (server-side dry-run
// apply to envtest, with the Prometheus Operator's CRDs from its Go module). helm is pinned in the
// Makefile (`make helm`, run by `make test`), which passes its path in $HELM.
package charts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

const (
	chartDir = "resend-webhook-operator"
	// Release name and namespace that give the chart config/default's names.
	release   = "resend-webhook-operator"
	namespace = "resend-webhook-operator-system"
	// The image config/manager sets.
	kustomizeImageTag = "dev"
	// The Kubernetes version helm renders for (envtest's API server).
	kubeVersion = "v1.37.2"
)

// allOn switches on every optional part of the chart.
var allOn = []string{
	"--set", "monitoring.serviceMonitor.enabled=true",
	"--set", "monitoring.podMonitor.enabled=true",
	"--set", "monitoring.prometheusRule.enabled=true",
	"--set", "dashboard.enabled=true",
}

// everything also restricts the operator to namespaces and sets the other knobs.
var everything = append(slices.Clone(allOn),
	"--set", "watchNamespaces={team-a,team-b}",
	"--set", "gatewayNamespaces={gateways,team-a}",
	"--set", "tenantGuardrails.allowedIngressHosts={*.hooks.example.com}",
	"--set", "tenantGuardrails.allowedIngressAnnotationPrefixes={cert-manager.io/}",
	"--set", "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	"--set", "imagePullSecrets[0].name=registry",
	"--set", "replicas=2",
	"--set", "extraArgs={--status-refresh=1m}",
	"--set", "podAnnotations.team=mail",
	"--set", "metrics.secure=false",
)

func TestHelmLint(t *testing.T) {
	for name, args := range map[string][]string{"defaults": nil, "everything": everything} {
		t.Run(name, func(t *testing.T) {
			run(t, helm(t), append([]string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}, args...)...)
		})
	}
}

// values.schema.json refuses a misspelt value instead of ignoring it.
func TestValuesSchemaRefusesTypos(t *testing.T) {
	for _, set := range []string{"monitoring.servicemonitor.enabled=true", "image.digest=latest", "watchNamespace={a}"} {
		cmd := exec.CommandContext(t.Context(), helm(t), "template", release, chartDir, "--kube-version", kubeVersion, "--set", set)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "schema") {
			t.Errorf("--set %s: want a schema error, got %v\n%.300s", set, err, out)
		}
	}
}

// The chart cannot read config/: make chart-files copies what it needs.
func TestChartCopiesAreCurrent(t *testing.T) {
	for copyPath, source := range map[string]string{
		"crds/webhooks.resend-operator.dev_resendwebhooks.yaml": "config/crd/bases/webhooks.resend-operator.dev_resendwebhooks.yaml",
		"files/manager-role.yaml":                               "config/rbac/role.yaml",
		"files/prometheus-rules.yaml":                           "config/prometheus/rules.yaml",
		"files/dashboard.json":                                  "config/grafana/dashboard.json",
	} {
		got, err := os.ReadFile(filepath.Join(chartDir, copyPath))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), source))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from %s: run make chart-files (make manifests does)", chartDir, copyPath, source)
		}
	}
}

// The chart with default values renders what config/default does (the Namespace aside: helm
// install --create-namespace makes it), and its monitoring and dashboard what config/prometheus
// and config/grafana do.
func TestChartAndKustomizeDoNotDrift(t *testing.T) {
	setImage := []string{"--set", "image.tag=" + kustomizeImageTag}
	defaults := byKey(t, renderChart(t, setImage...))
	kustomized := byKey(t, kustomize(t, "config/default"))
	delete(kustomized, "Namespace//"+namespace)
	compareObjects(t, "helm template (defaults)", defaults, "kubectl kustomize config/default", kustomized)

	extra := byKey(t, renderChart(t, append(setImage, allOn...)...))
	for k := range defaults {
		delete(extra, k)
	}
	monitoring := byKey(t, append(kustomize(t, "config/prometheus"), kustomize(t, "config/grafana")...))
	compareObjects(t, "helm template (monitoring and dashboard on)", extra, "kubectl kustomize config/prometheus config/grafana", monitoring)
}

// The pods' default image follows the manager's, in the chart and in the release manifests.
func TestOneImageForManagerAndPods(t *testing.T) {
	const img = "registry.example.com/rwo:v9.9.9"
	check := func(source string, objs []*unstructured.Unstructured, want string) {
		t.Helper()
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := containers[0].(map[string]any)
			env := fmt.Sprint(c["env"])
			if c["image"] != want || !strings.Contains(env, "value:"+want) {
				t.Errorf("%s: manager image %v, env %s; want %s for both", source, c["image"], env, want)
			}
			return
		}
		t.Errorf("%s renders no Deployment", source)
	}
	check("helm --set image.repository,image.tag", renderChart(t, "--set", "image.repository=registry.example.com/rwo", "--set", "image.tag=v9.9.9"), img)
	check("hack/build-installer.sh", parseObjects(t, run(t, filepath.Join(testutil.RepoRoot(), "hack", "build-installer.sh"), img)), img)
	check("kubectl kustomize config/default", kustomize(t, "config/default"), "resend-webhook-operator:"+kustomizeImageTag)
}

// With watchNamespaces, the manager may read Gateways in gatewayNamespaces (for status.url), and
// only get them; a watched namespace needs no extra Role.
func TestGatewayReaderRoles(t *testing.T) {
	var readers []string
	for _, o := range renderChart(t, everything...) {
		if o.GetKind() != "Role" || !strings.HasSuffix(o.GetName(), "-gateway-reader") {
			continue
		}
		readers = append(readers, o.GetNamespace())
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		if got, _ := json.Marshal(rules); string(got) != `[{"apiGroups":["gateway.networking.k8s.io"],"resources":["gateways"],"verbs":["get"]}]` {
			t.Errorf("Role %s/%s rules %s", o.GetNamespace(), o.GetName(), got)
		}
	}
	if !slices.Equal(readers, []string{"gateways"}) {
		t.Errorf("gateway-reader Roles in %v, want [gateways] (team-a is watched already)", readers)
	}
}

// Every object of the chart (defaults and everything on), of dist/install.yaml and of the
// optional kustomizations is server-side applied with dryRun=All: the API server validates it
// (schemas, CRDs, RBAC references) without storing it. Then the installer is applied for real and
// `make undeploy` removes all of it but the CRD.
func TestAPIServerAcceptsEveryRenderedObject(t *testing.T) {
	testutil.KubeAssets(t)
	crds := append([]string{filepath.Join(testutil.RepoRoot(), "config", "crd", "bases")}, testutil.MonitoringCRDs(t)...)
	env := &envtest.Environment{CRDDirectoryPaths: crds, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, ns := range []string{namespace, "team-a", "team-b", "gateways", "monitoring"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	installer := run(t, filepath.Join(testutil.RepoRoot(), "hack", "build-installer.sh"), "registry.example.com/rwo:v1")
	sources := map[string][]*unstructured.Unstructured{
		"chart (defaults)":   renderChart(t),
		"chart (everything)": renderChart(t, everything...),
		"dist/install.yaml":  parseObjects(t, installer),
		"config/prometheus":  kustomize(t, "config/prometheus"),
		"config/grafana":     kustomize(t, "config/grafana"),
	}
	for source, objs := range sources {
		t.Run(source, func(t *testing.T) {
			if len(objs) == 0 {
				t.Fatal("nothing rendered")
			}
			for _, o := range objs {
				if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("chart-test"), client.ForceOwnership, client.DryRunAll); err != nil {
					t.Errorf("%s %s/%s rejected: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
				}
			}
		})
	}

	// make deploy's apply for real, then make undeploy, which keeps the CRD (and so every
	// ResendWebhook). The dry runs above filled their objects in: parse afresh.
	installed := parseObjects(t, installer)
	for _, o := range installed {
		if o.GetKind() == "Namespace" {
			continue // exists; envtest has no namespace controller to finish deleting it
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("chart-test"), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "make", "-s", "undeploy", "KUBECTL="+testutil.Kubectl(t), "UNDEPLOY_FLAGS=--wait=false")
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make undeploy: %v\n%s", err, out)
	}
	var crd unstructured.Unstructured
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := c.Get(ctx, client.ObjectKey{Name: "resendwebhooks.webhooks.resend-operator.dev"}, &crd); err != nil {
		t.Errorf("make undeploy removed the CRD (and with it every ResendWebhook): %v", err)
	}
	for _, o := range installed {
		if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), live); !apierrors.IsNotFound(err) {
			t.Errorf("make undeploy left %s %s (err %v)", o.GetKind(), o.GetName(), err)
		}
	}
}

// --- rendering ---

func helm(t *testing.T) string { return testutil.PinnedTool(t, "HELM", "helm") }

func renderChart(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	base := []string{"template", release, chartDir, "--namespace", namespace, "--include-crds", "--kube-version", kubeVersion}
	return parseObjects(t, run(t, helm(t), append(base, args...)...))
}

func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	return parseObjects(t, run(t, testutil.Kubectl(t), "kustomize", filepath.Join(testutil.RepoRoot(), dir)))
}

func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "KUBECTL="+testutil.Kubectl(t), "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func parseObjects(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		m := map[string]any{}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("parsing rendered manifests: %v", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// --- comparison ---

// Labels that say who installed an object rather than what it is.
var installerLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
	"app.kubernetes.io/version", "app.kubernetes.io/part-of"}

func byKey(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		o = o.DeepCopy()
		labels := o.GetLabels()
		for _, l := range installerLabels {
			delete(labels, l)
		}
		if o.GetKind() == "CustomResourceDefinition" {
			labels = nil // config/crd labels it for make undeploy; helm never deletes CRDs
		}
		o.SetLabels(labels)
		key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if _, dup := m[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		m[key] = o
	}
	return m
}

func compareObjects(t *testing.T, aName string, a map[string]*unstructured.Unstructured, bName string, b map[string]*unstructured.Unstructured) {
	t.Helper()
	for k, x := range a {
		y, ok := b[k]
		if !ok {
			t.Errorf("%s has %s, %s does not", aName, k, bName)
			continue
		}
		if xb, yb := mustYAML(t, x.Object), mustYAML(t, y.Object); xb != yb {
			t.Errorf("%s differs between %s and %s:\n%s", k, aName, bName, firstDifference(xb, yb))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s has %s, %s does not", bName, k, aName)
		}
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// firstDifference shows a few lines around the first line that differs.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			lo := max(0, i-3)
			return fmt.Sprintf("  …\n  %s\n- %s\n+ %s", strings.Join(al[lo:i], "\n  "), al[i], bl[i])
		}
	}
	return fmt.Sprintf("one is longer: %d vs %d lines", len(al), len(bl))
}
