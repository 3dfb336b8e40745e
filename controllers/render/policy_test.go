package render_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// Under autoscaling the receivers can grow past one, so the PDB follows maxReplicas.
func TestPDBFollowsMaxReplicasUnderAutoscaling(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int32
		auto     *v1alpha1.AutoscalingSpec
		want     bool
	}{
		{"one replica", 1, nil, false},
		{"two replicas", 2, nil, true},
		{"autoscaling 1..4", 1, &v1alpha1.AutoscalingSpec{MinReplicas: new(int32(1)), MaxReplicas: 4}, true},
		{"autoscaling 1..1", 2, &v1alpha1.AutoscalingSpec{MinReplicas: new(int32(1)), MaxReplicas: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw := Minimal()
			rw.Spec.Receiver.Replicas = new(tc.replicas)
			rw.Spec.Receiver.Autoscaling = tc.auto
			if got := render.PodDisruptionBudget(rw) != nil; got != tc.want {
				t.Errorf("PDB present %v, want %v", got, tc.want)
			}
		})
	}
}

// A partial resources spec keeps its values and gains the default request of each resource
// it leaves out (unless it limits that resource: the request then defaults to the limit).
func TestPartialResourcesKeepDefaultRequests(t *testing.T) {
	q := resource.MustParse
	requests := func(r *corev1.ResourceRequirements) corev1.ResourceList {
		rw := Minimal()
		rw.Spec.Receiver.Resources = r
		return render.ReceiverDeployment(rw, opts).Spec.Template.Spec.Containers[0].Resources.Requests
	}
	got := requests(&corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m")}})
	if got.Cpu().String() != "250m" || got.Memory().String() != "64Mi" {
		t.Errorf("cpu-only spec: requests %v, want cpu 250m memory 64Mi", got)
	}
	got = requests(&corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("32Mi")}})
	if got.Cpu().String() != "100m" || got.Memory().String() != "0" {
		t.Errorf("memory-limit-only spec: requests %v, want cpu 100m and no memory request", got)
	}
}

// Receivers and workers read the Redis password and CA once at start: a new value must change
// both pod templates (and so roll the pods).
func TestRedisSecretsDigestRollsPods(t *testing.T) {
	annotations := func(digest string) []map[string]string {
		o := opts
		o.RedisSecretsDigest = digest
		return []map[string]string{
			render.ReceiverDeployment(Full(), o).Spec.Template.Annotations,
			render.WorkerDeployment(Full(), o).Spec.Template.Annotations,
		}
	}
	a := annotations(render.RedisSecretsDigest([]byte("old"), nil))
	b := annotations(render.RedisSecretsDigest([]byte("new"), nil))
	for i := range a {
		if a[i][render.RedisSecretsAnnotation] == b[i][render.RedisSecretsAnnotation] {
			t.Errorf("template %d: digest annotation unchanged by a new password", i)
		}
		if a[i][render.ConfigHashAnnotation] == b[i][render.ConfigHashAnnotation] {
			t.Errorf("template %d: config hash unchanged by a new password", i)
		}
	}
	if render.RedisSecretsDigest([]byte("ab"), []byte("c")) == render.RedisSecretsDigest([]byte("a"), []byte("bc")) {
		t.Error("digest does not separate password from CA")
	}
	if _, ok := annotations("")[0][render.RedisSecretsAnnotation]; ok {
		t.Error("digest annotation without Redis secrets")
	}
}
