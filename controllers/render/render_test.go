package render_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var opts = render.Options{Image: "ghcr.io/example/resend-webhook-operator:v1", GatewayAPI: true, KEDA: true}

// Minimal is the smallest valid spec.
func Minimal() *v1alpha1.ResendWebhook {
	return &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "hooks", Namespace: "mail", UID: "0f6c2a9e-1111-2222-3333-444455556666"},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: "resend-signing"},
			Queue:         v1alpha1.QueueSpec{Redis: v1alpha1.RedisSpec{URL: "redis://redis.mail:6379/0"}},
		},
	}
}

// Full sets every field.
func Full() *v1alpha1.ResendWebhook {
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	return &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "mail", UID: "7d1e5c3b-aaaa-bbbb-cccc-ddddeeeeffff"},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: "resend-signing", Keys: []string{"current", "next"}},
			Events:        []v1alpha1.EventType{"email.delivered", "email.bounced"},
			Queue: v1alpha1.QueueSpec{
				Name: "mail-events",
				Redis: v1alpha1.RedisSpec{
					URL:               "rediss://redis.mail:6380/2",
					PasswordSecretRef: &v1alpha1.SecretKeyRef{Name: "redis", Key: "password"},
					Sentinel:          &v1alpha1.SentinelSpec{MasterName: "mymaster", Addrs: []string{"s1:26379", "s2:26379"}},
					TLS:               &v1alpha1.RedisTLSSpec{CASecretRef: &v1alpha1.SecretKeyRef{Name: "redis-ca", Key: "ca.pem"}, InsecureSkipVerify: true},
				},
				DedupWindow: d(48 * time.Hour),
			},
			Retry: v1alpha1.RetryPolicy{
				MaxAttempts: new(int32(5)), Factor: new(int32(3)),
				MinBackoff: d(2 * time.Second), MaxBackoff: d(time.Minute), Randomize: new(false),
			},
			MaxDuration: d(90 * time.Second),
			Receiver: v1alpha1.ReceiverSpec{
				Replicas: new(int32(4)),
				PodSettings: v1alpha1.PodSettings{
					Image: "ghcr.io/example/receiver:v2",
					Resources: &corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
					},
					NodeSelector:       map[string]string{"pool": "edge"},
					Tolerations:        []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
					ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry-creds"}},
					ServiceAccountName: "hooks-receiver",
					PodMetadata: &v1alpha1.PodMetadata{
						// The operator's instance label wins over this one.
						Labels:      map[string]string{"team": "mail", render.LabelInstance: "not-prod"},
						Annotations: map[string]string{"sidecar.istio.io/inject": "false"},
					},
					PriorityClassName: "edge-critical",
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
					}},
				},
				MaxBodyBytes: new(int64(2 << 20)),
				Tolerance:    d(2 * time.Minute),
				Autoscaling:  &v1alpha1.AutoscalingSpec{MinReplicas: new(int32(3)), MaxReplicas: 10, TargetCPUUtilizationPercentage: new(int32(60))},
			},
			Ingress: &v1alpha1.IngressSpec{
				ClassName:   new("nginx"),
				Host:        "hooks.example.com",
				Path:        "/resend",
				TLS:         &v1alpha1.IngressTLS{SecretName: "hooks-tls"},
				Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"},
			},
			Worker: &v1alpha1.WorkerSpec{
				Replicas: new(int32(3)), Concurrency: new(int32(20)),
				Sink: &v1alpha1.SinkSpec{
					URL: "https://app.mail.svc/hooks/resend", Timeout: d(5 * time.Second),
					SigningSecretRef: &v1alpha1.SecretKeyRef{Name: "sink", Key: "secret"},
				},
				PodSettings: v1alpha1.PodSettings{
					ServiceAccountName:           "mail-worker",
					AutomountServiceAccountToken: new(true), // e.g. for cloud workload identity
					PodMetadata:                  &v1alpha1.PodMetadata{Annotations: map[string]string{"cost-center": "mail"}},
				},
				Env: []corev1.EnvVar{
					{Name: "DB_HOST", Value: "db.mail.svc"},
					{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
				},
				EnvFrom:      []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "worker-config"}}}},
				Volumes:      []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/tmp"}},
				CircuitBreaker: v1alpha1.CircuitBreakerSpec{FailureThreshold: new(int32(3)), ProbeInterval: d(time.Second),
					MaxProbeInterval: d(30 * time.Second), MaxHold: d(2 * time.Hour)},
			},
		},
	}
}

// Routed is Full behind a Gateway instead of an Ingress, with workers KEDA scales on the queue.
func Routed() *v1alpha1.ResendWebhook {
	rw := Full()
	rw.Name = "routed"
	rw.Spec.Ingress = nil
	rw.Spec.Gateway = &v1alpha1.GatewaySpec{
		ParentRefs: []v1alpha1.GatewayParentRef{
			{Name: "public", Namespace: "gateways", SectionName: "https"},
			{Name: "internal", Port: new(int32(8443))},
		},
		Hostnames:   []string{"hooks.example.com"},
		Path:        "/resend",
		Annotations: map[string]string{"team": "mail"},
	}
	rw.Spec.Queue.Redis.Sentinel = nil
	rw.Spec.Queue.Redis.URL = "rediss://default@redis:6380/2" // a single-label host: KEDA needs the namespace
	rw.Spec.Worker.Autoscaling = &v1alpha1.WorkerAutoscalingSpec{MinReplicas: new(int32(2)), MaxReplicas: 20, PendingPerReplica: new(int32(50))}
	return rw
}

func TestGolden(t *testing.T) {
	for name, rw := range map[string]*v1alpha1.ResendWebhook{"minimal": Minimal(), "full": Full(), "routed": Routed()} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			o := opts
			if name != "minimal" { // references a Redis password and CA
				o.RedisSecretsDigest = render.RedisSecretsDigest([]byte("s3cret"), []byte("-----BEGIN CERTIFICATE-----"))
			}
			for _, obj := range render.All(rw, o).Present {
				u, err := render.ApplyObject(obj)
				if err != nil {
					t.Fatal(err)
				}
				b, err := yaml.Marshal(u.Object)
				if err != nil {
					t.Fatal(err)
				}
				buf.WriteString("---\n")
				buf.Write(b)
			}
			golden := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./controllers/render/ -update)", err)
			}
			if !bytes.Equal(want, buf.Bytes()) {
				t.Errorf("rendered objects differ from %s (run with -update after checking the change):\n%s", golden, diffLines(string(want), buf.String()))
			}
		})
	}
}

func TestMinimalHasNoOptionalChildren(t *testing.T) {
	c := render.All(Minimal(), opts)
	var present, absent []string
	for _, o := range c.Present {
		present = append(present, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName())
	}
	for _, o := range c.Absent {
		absent = append(absent, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName())
	}
	// Default receivers: 2 replicas, so a PDB; no worker, ingress or HPA.
	wantPresent := []string{"Deployment/hooks-receiver", "Service/hooks-receiver", "PodDisruptionBudget/hooks-receiver"}
	wantAbsent := []string{"Deployment/hooks-worker", "Ingress/hooks", "HTTPRoute/hooks", "HorizontalPodAutoscaler/hooks-receiver",
		"TriggerAuthentication/hooks-worker", "ScaledObject/hooks-worker"}
	if !slices.Equal(present, wantPresent) || !slices.Equal(absent, wantAbsent) {
		t.Fatalf("present %v absent %v, want %v and %v", present, absent, wantPresent, wantAbsent)
	}
}

func TestSecretsAreFilesNotEnvOrArgs(t *testing.T) {
	noUserEnv := Full()
	noUserEnv.Spec.Worker.Env, noUserEnv.Spec.Worker.EnvFrom = nil, nil
	for _, d := range []any{render.ReceiverDeployment(Full(), opts), render.WorkerDeployment(noUserEnv, opts)} {
		b, _ := yaml.Marshal(d)
		s := string(b)
		for _, bad := range []string{"env:", "envFrom:", "secretKeyRef"} {
			if strings.Contains(s, bad) {
				t.Errorf("deployment uses %q:\n%s", bad, s)
			}
		}
	}
	args := render.ReceiverArgs(Full())
	for _, want := range []string{"--secrets-dir=/etc/rwh/signing", "--redis-password-file=/etc/rwh/redis/password", "--redis-ca-file=/etc/rwh/redis-ca/ca.crt"} {
		if !slices.Contains(args, want) {
			t.Errorf("receiver args %q lack %q", args, want)
		}
	}
	if !slices.Contains(render.WorkerArgs(Full()), "--sink-secret-file=/etc/rwh/sink/secret") {
		t.Errorf("worker args lack --sink-secret-file: %q", render.WorkerArgs(Full()))
	}
}

func TestSpecChangeRollsPodsButRenderIsStable(t *testing.T) {
	hash := func(rw *v1alpha1.ResendWebhook) string {
		return render.ReceiverDeployment(rw, opts).Spec.Template.Annotations[render.ConfigHashAnnotation]
	}
	a, b := hash(Minimal()), hash(Minimal())
	if a == "" || a != b {
		t.Fatalf("hash not stable: %q vs %q", a, b)
	}
	changed := Minimal()
	changed.Spec.Retry.MaxAttempts = new(int32(7))
	if hash(changed) == a {
		t.Fatal("changing maxAttempts kept the config hash: pods would not roll")
	}
	// Reordering the event allowlist is the same configuration.
	x, y := Full(), Full()
	slices.Reverse(y.Spec.Events)
	if hash(x) != hash(y) {
		t.Fatal("reordered events changed the config hash")
	}
}

func TestRenderDoesNotMutateInput(t *testing.T) {
	rw := Minimal()
	before := rw.DeepCopy()
	_ = render.All(rw, opts)
	b1, _ := yaml.Marshal(before)
	b2, _ := yaml.Marshal(rw)
	if !bytes.Equal(b1, b2) {
		t.Fatal("rendering changed the ResendWebhook")
	}
}

// diffLines shows the first differing lines; enough to see what changed.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out strings.Builder
	shown := 0
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b && shown < 20 {
			out.WriteString("line " + strconv.Itoa(i+1) + "\n  want: " + a + "\n  got:  " + b + "\n")
			shown++
		}
	}
	return out.String()
}
