package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// RepoRoot is the repository's top directory (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// KubeAssetsDir returns the directory holding kube-apiserver, etcd and kubectl, from
// KUBEBUILDER_ASSETS or the cache hack/envtest-assets.sh builds into, and sets
// KUBEBUILDER_ASSETS to it for envtest. It fails clearly when the binaries are missing.
func KubeAssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest-assets.sh"), "--print-dir").Output()
		if err != nil {
			return "", fmt.Errorf("locating envtest assets: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("envtest binary %s missing in %s: run 'make envtest' (or 'make test') first", b, dir)
		}
	}
	if err := os.Setenv("KUBEBUILDER_ASSETS", dir); err != nil {
		return "", err
	}
	return dir, nil
}

// KubeAssets is KubeAssetsDir for a test: it fails the test when the binaries are missing.
func KubeAssets(t testing.TB) string {
	t.Helper()
	dir, err := KubeAssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Kubectl returns the path of the kubectl built with the envtest assets.
func Kubectl(t testing.TB) string {
	t.Helper()
	p := filepath.Join(KubeAssets(t), "kubectl")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kubectl missing in envtest assets: run 'make envtest': %v", err)
	}
	return p
}

// PinnedTool returns the path of a tool the Makefile pins (helm, promtool): $env when set (make
// exports it), else the newest "<name>-<version>" in the per-machine tools cache. It fails the
// test with how to get it when there is none.
func PinnedTool(t testing.TB, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest-assets.sh"), "--print-tools-dir").Output()
	if err != nil {
		t.Fatalf("locating the tools cache: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), name+"-*"))
	if len(matches) == 0 {
		t.Fatalf("%s not found: run `make %s` (make test does) or set $%s", name, name, env)
	}
	slices.Sort(matches)
	return matches[len(matches)-1]
}
