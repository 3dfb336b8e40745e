package manager

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunNeedsImage(t *testing.T) {
	err := run(context.Background(), nil, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--image") {
		t.Fatalf("err = %v, want a message about --image", err)
	}
}

func TestHelpListsFlags(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"metrics-bind-address", "health-probe-bind-address", "leader-elect", "kubeconfig", "watch-namespaces", "image"} {
		if !strings.Contains(out.String(), "-"+f) {
			t.Errorf("usage lacks --%s:\n%s", f, out.String())
		}
	}
}

func TestKubeconfigFromEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := restConfig("", func(k string) string {
		if k == "KUBECONFIG" {
			return path
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" {
		t.Fatalf("host %q", cfg.Host)
	}
}

func TestCacheOptionsWatchNamespaces(t *testing.T) {
	if o := cacheOptions(nil); len(o.DefaultNamespaces) != 0 {
		t.Fatalf("empty list should watch all namespaces, got %v", o.DefaultNamespaces)
	}
	o := cacheOptions([]string{"a", "b"})
	if _, ok := o.DefaultNamespaces["b"]; !ok || len(o.DefaultNamespaces) != 2 {
		t.Fatalf("namespaces %v", o.DefaultNamespaces)
	}
}
