package v1alpha1_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// kubectl runs the kubectl built with the envtest assets against the envtest API server, with a
// private kubeconfig, discovery cache and HOME so nothing leaks in from or out to the machine.
type kubectl struct {
	bin        string
	kubeconfig string
	cacheDir   string
	home       string
	namespace  string
}

func newKubectl(t *testing.T, namespace string) *kubectl {
	t.Helper()
	user, err := testEnv.AddUser(envtest.User{Name: "kubectl-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding envtest user: %v", err)
	}
	cfg, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("rendering kubeconfig: %v", err)
	}
	dir := t.TempDir()
	k := &kubectl{
		bin:        testutil.Kubectl(t),
		kubeconfig: filepath.Join(dir, "kubeconfig"),
		cacheDir:   filepath.Join(dir, "cache"),
		home:       dir,
		namespace:  namespace,
	}
	if err := os.WriteFile(k.kubeconfig, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// run returns kubectl's stdout and, on failure, an error carrying stderr.
func (k *kubectl) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	full := append([]string{"--kubeconfig=" + k.kubeconfig, "--cache-dir=" + k.cacheDir, "--namespace=" + k.namespace}, args...)
	cmd := exec.CommandContext(ctx, k.bin, full...)
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = []string{"HOME=" + k.home, "PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &kubectlError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type kubectlError struct {
	args   []string
	err    error
	stderr string
}

func (e *kubectlError) Error() string {
	return "kubectl " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.stderr
}

// TestKubectl drives the real kubectl as a user would: apply the samples, list them with the
// printer columns, and read the field documentation with kubectl explain.
func TestKubectl(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	k := newKubectl(t, newNamespace(t))

	out, err := k.run(ctx, "apply", "-f", "config/samples/")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"secret/resend-signing-secret created",
		"resendwebhook.webhooks.resend-operator.dev/transactional created",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply output lacks %q:\n%s", want, out)
		}
	}

	// Applying again changes nothing: server-side defaults do not make the object drift.
	out, err = k.run(ctx, "apply", "-f", "config/samples/")
	if err != nil {
		t.Fatal(err)
	}
	if want := "resendwebhook.webhooks.resend-operator.dev/transactional unchanged"; !strings.Contains(out, want) {
		t.Errorf("second kubectl apply output lacks %q:\n%s", want, out)
	}

	t.Run("get shows the printer columns", func(t *testing.T) {
		for _, resource := range []string{"rwh", "resendwebhooks", "resend"} { // short name, plural, category
			out, err := k.run(ctx, "get", resource)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if got, want := strings.Fields(lines[0]), []string{"NAME", "READY", "URL", "QUEUE", "PENDING", "DEAD", "AGE"}; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("kubectl get %s header = %q, want %q", resource, got, want)
			}
			if len(lines) != 2 || !strings.HasPrefix(lines[1], "transactional ") {
				t.Errorf("kubectl get %s should list exactly the sample:\n%s", resource, out)
			}
		}
		out, err := k.run(ctx, "get", "rwh", "-o", "wide")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Fields(strings.SplitN(out, "\n", 2)[0]), []string{"NAME", "READY", "URL", "QUEUE", "PENDING", "DEAD", "REASON", "AGE"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("kubectl get rwh -o wide header = %q, want %q", got, want)
		}
	})

	t.Run("explain describes the retry policy", func(t *testing.T) {
		// kubectl explain reads the OpenAPI v3 document, which the API server publishes a little
		// after the CRD is established: poll until the retry policy shows up.
		var out string
		poll(t, 45*time.Second, func() error {
			out, err = k.run(ctx, "explain", "resendwebhook.spec.retry")
			if err == nil && !strings.Contains(out, "maxAttempts") {
				err = errors.New("retry fields not published yet:\n" + out)
			}
			return err
		})
		t.Logf("kubectl explain resendwebhook.spec.retry:\n%s", out)
		// Descriptions keep the line breaks of the Go comments and kubectl may wrap them again:
		// compare with whitespace collapsed.
		out = strings.Join(strings.Fields(out), " ")
		for _, want := range []string{
			"GROUP: webhooks.resend-operator.dev",
			"min(maxBackoff, R * minBackoff * factor^(n-1))",
			"dead-letter",
			"maxAttempts <integer>", "total number of attempts", "default 3",
			"factor <integer>", "exponential backoff", "default 2",
			"minBackoff <string>", "delay after the first failed attempt", `default "1s"`,
			"maxBackoff <string>", "caps the delay", `default "10s"`,
			"randomize <boolean>", "lockstep", "Default true",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl explain resendwebhook.spec.retry lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestKustomizations renders each kustomize base this package owns with kubectl's built-in
// kustomize and checks it holds the expected objects.
func TestKustomizations(t *testing.T) {
	t.Parallel()
	bases := map[string][]string{
		"config/samples":    {"kind: Secret", "kind: ResendWebhook"},
		"config/crd":        {"kind: CustomResourceDefinition", "name: resendwebhooks.webhooks.resend-operator.dev"},
		"config/prometheus": {"kind: PodMonitor", "kind: PrometheusRule", "port: admin", "alert: ResendWebhookDeadLettersGrowing"},
	}
	bin, home := testutil.Kubectl(t), t.TempDir()
	for dir, wants := range bases {
		t.Run(dir, func(t *testing.T) {
			cmd := exec.CommandContext(testContext(t), bin, "kustomize", dir)
			cmd.Dir = testutil.RepoRoot()
			cmd.Env = []string{"HOME=" + home}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
			}
			for _, w := range wants {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("kubectl kustomize %s lacks %q", dir, w)
				}
			}
		})
	}
}

// poll calls check every 250 ms until it returns nil, and fails the test with check's last
// error when timeout passes first.
func poll(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not done after %v: %v", timeout, err)
		case <-tick.C:
		}
	}
}
