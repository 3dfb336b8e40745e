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
	for _, f := range []string{"metrics-bind-address", "metrics-secure", "metrics-cert-dir", "health-probe-bind-address", "leader-elect",
		"kubeconfig", "watch-namespaces", "image", "status-refresh", "queue-status-interval", "queue-status-write-budget",
		"allowed-ingress-hosts", "allowed-ingress-annotation-prefixes"} {
		if !strings.Contains(out.String(), "-"+f) {
			t.Errorf("usage lacks --%s:\n%s", f, out.String())
		}
	}
}

// A tenant flag that would match nothing or everything stops the manager before it connects.
func TestRunRejectsBadPolicyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--image=x", "--allowed-ingress-hosts=*"},
		{"--image=x", "--allowed-ingress-hosts=https://hooks.example.com"},
		{"--image=x", "--allowed-ingress-hosts=*.*.example.com"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "--allowed-ingress-") {
			t.Errorf("%v: err = %v, want one naming the flag", args, err)
		}
	}
}

// By default the metrics endpoint is HTTPS with authentication and authorization.
func TestMetricsSecureByDefault(t *testing.T) {
	o := metricsOptions(Options{MetricsBindAddress: ":8443"})
	if !o.SecureServing || o.FilterProvider == nil {
		t.Fatalf("secure %v, filter %v", o.SecureServing, o.FilterProvider != nil)
	}
	if o := metricsOptions(Options{MetricsBindAddress: ":8080", MetricsInsecure: true}); o.SecureServing || o.FilterProvider != nil {
		t.Fatalf("--metrics-secure=false still secure: %+v", o)
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
