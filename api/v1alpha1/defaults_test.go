package v1alpha1_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func samplePath(name string) string {
	return filepath.Join(testutil.RepoRoot(), "config", "samples", name)
}

// readSample decodes one manifest of config/samples strictly (a typo in the sample fails here).
func readSample(t *testing.T, name string, into any) {
	t.Helper()
	b, err := os.ReadFile(samplePath(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
}

// createAndRead creates obj and returns what the API server stored, defaults included.
func createAndRead(t *testing.T, obj *webhooksv1alpha1.ResendWebhook) *webhooksv1alpha1.ResendWebhook {
	t.Helper()
	ctx := testContext(t)
	if err := k8sClient.Create(ctx, obj.DeepCopy()); err != nil {
		t.Fatalf("creating %s: %v", obj.Name, err)
	}
	got := &webhooksv1alpha1.ResendWebhook{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// wantField is one value the API server must have stored, written as the number or duration of
// the CRD's +kubebuilder:default marker (not via the Go constants, so both are checked).
type wantField struct {
	path string
	got  any
	want any
}

func checkFields(t *testing.T, fields []wantField) {
	t.Helper()
	for _, f := range fields {
		if !equality.Semantic.DeepEqual(f.got, f.want) {
			t.Errorf("%s = %v, want %v", f.path, f.got, f.want)
		}
	}
}

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

// TestSampleIsAcceptedAndDefaulted applies config/samples as a user would and checks that every
// field the sample leaves out gets the documented default.
func TestSampleIsAcceptedAndDefaulted(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)

	secret := &corev1.Secret{}
	readSample(t, "signing_secret.yaml", secret)
	value, ok := secret.StringData["signing-secret"]
	if !ok || !strings.HasPrefix(value, "whsec_") {
		t.Fatalf("sample Secret must hold a whsec_ value under key signing-secret, got %q", value)
	}
	if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(value, "whsec_")); err != nil {
		t.Fatalf("sample signing secret is not whsec_ + base64: %v", err)
	}
	secret.Namespace = ns
	if err := k8sClient.Create(testContext(t), secret); err != nil {
		t.Fatalf("sample Secret rejected: %v", err)
	}

	sample := &webhooksv1alpha1.ResendWebhook{}
	readSample(t, "webhooks_v1alpha1_resendwebhook.yaml", sample)
	if sample.Spec.SigningSecret.Name != secret.Name {
		t.Errorf("sample ResendWebhook refers to Secret %q, the sample Secret is %q", sample.Spec.SigningSecret.Name, secret.Name)
	}
	sample.Namespace = ns
	got := createAndRead(t, sample)

	s := got.Spec
	if s.Ingress == nil || s.Worker == nil || s.Worker.Sink == nil {
		t.Fatalf("sample lost ingress or worker.sink: %+v", s)
	}
	checkFields(t, []wantField{
		{"signingSecret.keys", s.SigningSecret.Keys, []string{"signing-secret"}},
		{"queue.redis.url", s.Queue.Redis.URL, "redis://127.0.0.1:6379/0"},
		{"queue.dedupWindow", s.Queue.DedupWindow, dur("24h")},
		{"retry.maxAttempts (set by the sample)", s.Retry.MaxAttempts, new(int32(8))},
		{"retry.factor", s.Retry.Factor, new(int32(2))},
		{"retry.minBackoff", s.Retry.MinBackoff, dur("1s")},
		{"retry.maxBackoff (set by the sample)", s.Retry.MaxBackoff, dur("5m")},
		{"retry.randomize", s.Retry.Randomize, new(true)},
		{"maxDuration", s.MaxDuration, dur("60s")},
		{"receiver.replicas", s.Receiver.Replicas, new(int32(2))},
		{"receiver.maxBodyBytes", s.Receiver.MaxBodyBytes, new(int64(1048576))},
		{"receiver.tolerance", s.Receiver.Tolerance, dur("5m")},
		{"ingress.path", s.Ingress.Path, "/"},
		{"worker.replicas", s.Worker.Replicas, new(int32(1))},
		{"worker.concurrency", s.Worker.Concurrency, new(int32(10))},
		{"worker.sink.timeout", s.Worker.Sink.Timeout, dur("10s")},
		{"worker.circuitBreaker.enabled", s.Worker.CircuitBreaker.Enabled, new(true)},
		{"worker.circuitBreaker.failureThreshold", s.Worker.CircuitBreaker.FailureThreshold, new(int32(5))},
	})
	if !slices.Contains(s.Events, "email.bounced") {
		t.Errorf("sample events lost: %v", s.Events)
	}

	// The Go mirror of the defaults yields the same spec as the API server.
	local := sample.DeepCopy()
	local.Default()
	if !equality.Semantic.DeepEqual(local.Spec, got.Spec) {
		t.Errorf("Default() of the sample differs from the API server's defaults:\nDefault(): %s\nserver:    %s", toYAML(t, local.Spec), toYAML(t, got.Spec))
	}
}

// TestGoDefaultsMatchCRD creates a minimal object that switches on every optional block with
// defaults inside (ingress, worker with sink, autoscaling) and compares what the API server
// stored with a copy defaulted by Default() in Go.
func TestGoDefaultsMatchCRD(t *testing.T) {
	t.Parallel()
	minimal := &webhooksv1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "minimal", Namespace: newNamespace(t)},
		Spec: webhooksv1alpha1.ResendWebhookSpec{
			SigningSecret: webhooksv1alpha1.SigningSecretRef{Name: "resend-signing-secret"},
			Queue:         webhooksv1alpha1.QueueSpec{Redis: webhooksv1alpha1.RedisSpec{URL: "redis://127.0.0.1:6379/0"}},
			Receiver: webhooksv1alpha1.ReceiverSpec{
				Autoscaling: &webhooksv1alpha1.AutoscalingSpec{MaxReplicas: 6},
			},
			Ingress: &webhooksv1alpha1.IngressSpec{Host: "hooks.example.com"},
			Worker: &webhooksv1alpha1.WorkerSpec{
				Sink:        &webhooksv1alpha1.SinkSpec{URL: "http://sink.default.svc/events"},
				Autoscaling: &webhooksv1alpha1.WorkerAutoscalingSpec{MaxReplicas: 5},
			},
			Resend: &webhooksv1alpha1.ResendSpec{APIKeySecretRef: webhooksv1alpha1.APIKeySecretRef{Name: "resend-api"}},
		},
	}
	// Ingress and gateway exclude each other: the gateway's defaults are checked on a second object.
	routed := &webhooksv1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "routed", Namespace: minimal.Namespace},
		Spec: webhooksv1alpha1.ResendWebhookSpec{
			SigningSecret: minimal.Spec.SigningSecret,
			Queue:         minimal.Spec.Queue,
			Gateway:       &webhooksv1alpha1.GatewaySpec{ParentRefs: []webhooksv1alpha1.GatewayParentRef{{Name: "public"}}},
		},
	}
	var got *webhooksv1alpha1.ResendWebhook
	for _, obj := range []*webhooksv1alpha1.ResendWebhook{routed, minimal} {
		got = createAndRead(t, obj)
		local := obj.DeepCopy()
		local.Default()
		if !equality.Semantic.DeepEqual(local.Spec, got.Spec) {
			t.Fatalf("%s: Default() differs from the CRD's defaults:\nDefault(): %s\nserver:    %s", obj.Name, toYAML(t, local.Spec), toYAML(t, got.Spec))
		}
		if obj == routed {
			checkFields(t, []wantField{{"gateway.path", got.Spec.Gateway.Path, "/"}})
		}
	}
	s := got.Spec
	checkFields(t, []wantField{
		{"signingSecret.keys", s.SigningSecret.Keys, []string{"signing-secret"}},
		{"queue.dedupWindow", s.Queue.DedupWindow, dur("24h")},
		{"retry.maxAttempts", s.Retry.MaxAttempts, new(int32(3))},
		{"retry.factor", s.Retry.Factor, new(int32(2))},
		{"retry.minBackoff", s.Retry.MinBackoff, dur("1s")},
		{"retry.maxBackoff", s.Retry.MaxBackoff, dur("10s")},
		{"retry.randomize", s.Retry.Randomize, new(true)},
		{"maxDuration", s.MaxDuration, dur("60s")},
		{"receiver.replicas", s.Receiver.Replicas, new(int32(2))},
		{"receiver.maxBodyBytes", s.Receiver.MaxBodyBytes, new(int64(1048576))},
		{"receiver.tolerance", s.Receiver.Tolerance, dur("5m")},
		{"receiver.autoscaling.minReplicas (none: see EffectiveMinReplicas)", s.Receiver.Autoscaling.MinReplicas, (*int32)(nil)},
		{"receiver.autoscaling.targetCPUUtilizationPercentage", s.Receiver.Autoscaling.TargetCPUUtilizationPercentage, new(int32(70))},
		{"ingress.path", s.Ingress.Path, "/"},
		{"worker.replicas", s.Worker.Replicas, new(int32(1))},
		{"worker.concurrency", s.Worker.Concurrency, new(int32(10))},
		{"worker.sink.timeout", s.Worker.Sink.Timeout, dur("10s")},
		{"worker.autoscaling.minReplicas", s.Worker.Autoscaling.MinReplicas, new(int32(1))},
		{"worker.autoscaling.pendingPerReplica", s.Worker.Autoscaling.PendingPerReplica, new(int32(100))},
		{"worker.circuitBreaker.enabled", s.Worker.CircuitBreaker.Enabled, new(true)},
		{"worker.circuitBreaker.failureThreshold", s.Worker.CircuitBreaker.FailureThreshold, new(int32(5))},
		{"worker.circuitBreaker.probeInterval", s.Worker.CircuitBreaker.ProbeInterval, dur("2s")},
		{"worker.circuitBreaker.maxProbeInterval", s.Worker.CircuitBreaker.MaxProbeInterval, dur("1m")},
		{"worker.circuitBreaker.maxHold", s.Worker.CircuitBreaker.MaxHold, dur("24h")},
		{"resend.apiKeySecretRef.key", s.Resend.APIKeySecretRef.Key, "api-key"},
		{"resend.deletionPolicy", s.Resend.DeletionPolicy, webhooksv1alpha1.DeletionPolicyDelete},
		{"resend.autoEnable", s.Resend.AutoEnable, new(true)},
	})
	if got := s.Receiver.Autoscaling.EffectiveMinReplicas(); got != 2 {
		t.Errorf("EffectiveMinReplicas() = %d, want 2", got)
	}
	if got := (&webhooksv1alpha1.AutoscalingSpec{MaxReplicas: 1}).EffectiveMinReplicas(); got != 1 {
		t.Errorf("EffectiveMinReplicas() with maxReplicas 1 = %d, want 1", got)
	}
	if s.Queue.Name != "" {
		t.Errorf("queue.name has no CRD default, got %q", s.Queue.Name)
	}
	if got.QueueName() != minimal.Namespace+".minimal" {
		t.Errorf("QueueName() = %q, want <namespace>.<name>", got.QueueName())
	}
}

// TestDefaultKeepsSetValues: Default() only fills gaps and is idempotent.
func TestDefaultKeepsSetValues(t *testing.T) {
	rw := &webhooksv1alpha1.ResendWebhook{Spec: webhooksv1alpha1.ResendWebhookSpec{
		SigningSecret: webhooksv1alpha1.SigningSecretRef{Name: "s", Keys: []string{"a", "b"}},
		Retry:         webhooksv1alpha1.RetryPolicy{MaxAttempts: new(int32(7)), Randomize: new(false)},
		Ingress:       &webhooksv1alpha1.IngressSpec{Path: "/hooks"},
	}}
	rw.Default()
	once := rw.DeepCopy()
	rw.Default()
	if !equality.Semantic.DeepEqual(once, rw) {
		t.Errorf("Default() is not idempotent")
	}
	checkFields(t, []wantField{
		{"signingSecret.keys", rw.Spec.SigningSecret.Keys, []string{"a", "b"}},
		{"retry.maxAttempts", rw.Spec.Retry.MaxAttempts, new(int32(7))},
		{"retry.randomize", rw.Spec.Retry.Randomize, new(false)},
		{"retry.factor", rw.Spec.Retry.Factor, new(int32(2))},
		{"ingress.path", rw.Spec.Ingress.Path, "/hooks"},
	})
	if rw.Spec.Worker != nil || rw.Spec.Receiver.Autoscaling != nil {
		t.Errorf("Default() must not switch on optional blocks (worker, autoscaling)")
	}
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return "\n" + string(b)
}
