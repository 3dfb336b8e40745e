package testutil

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Go modules whose CRD manifests the tests install into envtest, read from the module cache
// (never copied into this repository). The Gateway API is a dependency of the operator, so its
// version is go.mod's; the others are only needed for their YAML and pinned here.
const (
	// GatewayAPIModule holds config/crd/standard (HTTPRoute, Gateway, …).
	GatewayAPIModule = "sigs.k8s.io/gateway-api"
	// KEDAModule holds config/crd/bases (ScaledObject, TriggerAuthentication, …).
	KEDAModule = "github.com/kedacore/keda/v2@v2.21.0"
	// PrometheusOperatorModule holds example/prometheus-operator-crd (ServiceMonitor, PodMonitor,
	// PrometheusRule, …).
	PrometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
)

var (
	moduleDirsMu sync.Mutex
	moduleDirs   = map[string]string{}
)

// ModuleDir returns the directory of a module in the module cache: "path@version" is downloaded
// through the module proxy when missing (go mod download); a bare path is the version go.mod
// requires.
func ModuleDir(module string) (string, error) {
	moduleDirsMu.Lock()
	defer moduleDirsMu.Unlock()
	if dir, ok := moduleDirs[module]; ok {
		return dir, nil
	}
	var cmd *exec.Cmd
	if strings.Contains(module, "@") {
		// Outside the repository's module, so go.mod and go.sum stay as they are.
		cmd = exec.Command("go", "mod", "download", "-json", module)
		cmd.Dir = os.TempDir()
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	} else {
		cmd = exec.Command("go", "mod", "download", "-json", module)
		cmd.Dir = RepoRoot()
	}
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", module, info.Error)
	}
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s", module, err, exitStderr(err))
	}
	moduleDirs[module] = info.Dir
	return info.Dir, nil
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// ModuleFiles returns the paths of files below dir of module, failing the test when one is
// missing (a new module version moved them).
func ModuleFiles(t testing.TB, module, dir string, files ...string) []string {
	t.Helper()
	root, err := ModuleDir(module)
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(root, dir, f)
		if _, err := os.Stat(paths[i]); err != nil {
			t.Fatalf("CRD manifest of %s missing: %v", module, err)
		}
	}
	return paths
}

// GatewayAPICRDs are the Gateway API CRDs the operator uses: HTTPRoute and Gateway.
func GatewayAPICRDs(t testing.TB) []string {
	return ModuleFiles(t, GatewayAPIModule, "config/crd/standard",
		"gateway.networking.k8s.io_gateways.yaml", "gateway.networking.k8s.io_httproutes.yaml")
}

// KEDACRDs are KEDA's ScaledObject and TriggerAuthentication CRDs.
func KEDACRDs(t testing.TB) []string {
	return ModuleFiles(t, KEDAModule, "config/crd/bases",
		"keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")
}

// MonitoringCRDs are the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs.
func MonitoringCRDs(t testing.TB) []string {
	return ModuleFiles(t, PrometheusOperatorModule, "example/prometheus-operator-crd",
		"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")
}
