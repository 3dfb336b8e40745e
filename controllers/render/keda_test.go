package render_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
)

func triggerMetadata(t *testing.T, so *unstructured.Unstructured) (string, map[string]any) {
	t.Helper()
	triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	if len(triggers) != 1 {
		t.Fatalf("want one trigger, got %v", triggers)
	}
	tr := triggers[0].(map[string]any)
	return tr["type"].(string), tr["metadata"].(map[string]any)
}

func TestScaledObjectRedisAddresses(t *testing.T) {
	for _, tc := range []struct {
		url, wantKey, want string
		sentinel           []string
	}{
		{url: "redis://redis:6379/0", wantKey: "address", want: "redis.mail:6379"},
		{url: "redis://redis.cache:6379/0", wantKey: "address", want: "redis.cache:6379"},
		{url: "redis://10.1.2.3/0", wantKey: "address", want: "10.1.2.3:6379"},
		{url: "redis://[fd00::1]:6379/0", wantKey: "address", want: "[fd00::1]:6379"},
		{url: "redis://localhost:6379/0", wantKey: "address", want: "localhost:6379"},
		{url: "redis://ignored:6379/3", sentinel: []string{"s1:26379", "s2.cache:26379"}, wantKey: "addresses", want: "s1.mail:26379,s2.cache:26379"},
	} {
		rw := Minimal()
		rw.Spec.Queue.Redis.URL = tc.url
		if tc.sentinel != nil {
			rw.Spec.Queue.Redis.Sentinel = &v1alpha1.SentinelSpec{MasterName: "mymaster", Addrs: tc.sentinel}
		}
		rw.Spec.Worker = &v1alpha1.WorkerSpec{PodSettings: v1alpha1.PodSettings{Image: "x"}, Autoscaling: &v1alpha1.WorkerAutoscalingSpec{MaxReplicas: 3}}
		so := render.ScaledObject(rw, opts)
		if so == nil {
			t.Fatalf("%s: no ScaledObject", tc.url)
		}
		typ, md := triggerMetadata(t, so)
		if md[tc.wantKey] != tc.want {
			t.Errorf("%s: %s = %v, want %s", tc.url, tc.wantKey, md[tc.wantKey], tc.want)
		}
		if wantType := map[bool]string{false: "redis", true: "redis-sentinel"}[tc.sentinel != nil]; typ != wantType {
			t.Errorf("%s: trigger type %s, want %s", tc.url, typ, wantType)
		}
		if md["listName"] != "asynq:{mail.hooks}:pending" || md["listLength"] != "100" {
			t.Errorf("%s: list %v length %v, want the default queue's pending list and the default 100", tc.url, md["listName"], md["listLength"])
		}
		if render.TriggerAuthentication(rw, opts) != nil {
			t.Errorf("%s: a TriggerAuthentication without any Secret to hand over", tc.url)
		}
		if _, ok := so.Object["spec"].(map[string]any)["triggers"].([]any)[0].(map[string]any)["authenticationRef"]; ok {
			t.Errorf("%s: authenticationRef without a TriggerAuthentication", tc.url)
		}
	}
}

// Without KEDA the workers keep spec.worker.replicas and nothing of KEDA is rendered or deleted.
// TestScaledObjectPerShard: one trigger per queue (current shards, then draining ones), each
// aiming at its share of pendingPerReplica; a cluster uses KEDA's redis-cluster scaler.
func TestScaledObjectPerShard(t *testing.T) {
	rw := shardedOnCluster()
	rw.Spec.Worker.Autoscaling = &v1alpha1.WorkerAutoscalingSpec{MaxReplicas: 10, PendingPerReplica: new(int32(90))}
	so := render.ScaledObject(rw, opts)
	if so == nil {
		t.Fatal("no ScaledObject")
	}
	triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	layout := render.Layout(rw)
	all := layout.All()
	distinct := map[string]bool{"mail-events": true}
	for _, n := range []int{3, 4} {
		for _, q := range shard.Queues("mail-events", n) {
			distinct[q] = true
		}
	}
	if len(triggers) != len(all) || len(all) != len(distinct) {
		t.Fatalf("%d triggers for queues %v", len(triggers), all)
	}
	for i, tr := range triggers {
		tr := tr.(map[string]any)
		md := tr["metadata"].(map[string]any)
		if tr["type"] != "redis-cluster" || md["addresses"] != "n1.redis:6379,n2.redis:6379" || md["listLength"] != "30" ||
			md["listName"] != "asynq:{"+all[i]+"}:pending" {
			t.Errorf("trigger %d = %v", i, tr)
		}
		if _, ok := md["databaseIndex"]; ok {
			t.Errorf("trigger %d: a cluster has no database index", i)
		}
	}
}

func TestWorkerAutoscalingWithoutKEDA(t *testing.T) {
	rw := Minimal()
	rw.Spec.Queue.Redis.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "redis", Key: "password"}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{PodSettings: v1alpha1.PodSettings{Image: "x"}, Replicas: new(int32(3)), Autoscaling: &v1alpha1.WorkerAutoscalingSpec{MaxReplicas: 9}}
	noKEDA := opts
	noKEDA.KEDA = false
	if d := render.WorkerDeployment(rw, noKEDA); d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("without KEDA the workers must keep spec.worker.replicas, got %v", d.Spec.Replicas)
	}
	if d := render.WorkerDeployment(rw, opts); d.Spec.Replicas != nil {
		t.Errorf("with KEDA the workers' replicas are KEDA's, got %d", *d.Spec.Replicas)
	}
	if render.TriggerAuthentication(rw, opts) == nil {
		t.Error("with a Redis password KEDA needs a TriggerAuthentication")
	}
	for _, c := range [][]string{kinds(render.All(rw, noKEDA).Present), kinds(render.All(rw, noKEDA).Absent)} {
		for _, k := range c {
			if k == "ScaledObject" || k == "TriggerAuthentication" {
				t.Errorf("without KEDA %s must be neither applied nor deleted", k)
			}
		}
	}
	noGateway := opts
	noGateway.GatewayAPI = false
	rw.Spec.Gateway = &v1alpha1.GatewaySpec{ParentRefs: []v1alpha1.GatewayParentRef{{Name: "public"}}}
	if render.HTTPRoute(rw, noGateway) != nil || render.HTTPRoute(rw, opts) == nil {
		t.Error("the HTTPRoute must be rendered exactly when the Gateway API is served")
	}
}

func kinds(objs []client.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind)
	}
	return out
}
