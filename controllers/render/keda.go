package render

import (
	"maps"
	"net"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
)

// KEDA's kinds. They are built as unstructured objects: KEDA's Go module would pull its whole
// dependency tree into the operator for two small specs.
var (
	ScaledObjectGVK          = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
	TriggerAuthenticationGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}
)

// ScalerName is the name of the workers' ScaledObject and TriggerAuthentication.
func ScalerName(rw *v1alpha1.ResendWebhook) string { return WorkerName(rw) }

// workerAutoscaling is spec.worker.autoscaling when it can act: set, with KEDA installed, and a
// Redis address KEDA can use.
func workerAutoscaling(rw *v1alpha1.ResendWebhook, o Options) (*v1alpha1.WorkerAutoscalingSpec, asynq.RedisConnOpt) {
	w := rw.Spec.Worker
	if w == nil || w.Autoscaling == nil || !o.KEDA {
		return nil, nil
	}
	r := rw.Spec.Queue.Redis
	if r.Cluster != nil { // KEDA's redis-cluster scaler takes the seed addresses as they are
		return w.Autoscaling, nil
	}
	c := redisconn.Config{URL: r.URL}
	if r.Sentinel != nil {
		c.SentinelMaster, c.SentinelAddrs = r.Sentinel.MasterName, r.Sentinel.Addrs
	}
	conn, err := c.ConnOpt()
	if err != nil { // QueueReachable reports the invalid URL; the workers keep their replicas
		return nil, nil
	}
	return w.Autoscaling, conn
}

// ScaledObject scales the worker Deployment on the length of the queue's pending list with
// KEDA's redis (redis-sentinel, redis-cluster) scaler; nil without spec.worker.autoscaling or
// without KEDA. The Redis password and CA come from TriggerAuthentication.
//
// A sharded webhook gets one trigger per queue, draining ones included (their workers must
// stay). KEDA scales to the largest of the triggers' wishes, and svix-ids spread evenly over
// the shards, so each trigger's target is pendingPerReplica divided by the shard count: the
// replicas then follow the whole backlog, not one shard's.
func ScaledObject(rw *v1alpha1.ResendWebhook, o Options) *unstructured.Unstructured {
	rw = defaulted(rw)
	a, conn := workerAutoscaling(rw, o)
	if a == nil {
		return nil
	}
	r := rw.Spec.Queue.Redis
	layout := Layout(rw)
	metadata := map[string]any{
		"listLength": strconv.Itoa(max(1, int(*a.PendingPerReplica)/layout.Shards)),
	}
	scaler := "redis"
	if r.Cluster != nil {
		scaler = "redis-cluster"
		addrs := make([]string, len(r.Cluster.Addrs))
		for i, a := range r.Cluster.Addrs {
			addrs[i] = qualifiedAddr(a, rw.Namespace)
		}
		metadata["addresses"] = strings.Join(addrs, ",")
	}
	switch c := conn.(type) {
	case asynq.RedisClientOpt:
		metadata["address"] = qualifiedAddr(c.Addr, rw.Namespace)
		metadata["databaseIndex"] = strconv.Itoa(c.DB)
		if c.Username != "" {
			metadata["username"] = c.Username
		}
	case asynq.RedisFailoverClientOpt:
		scaler = "redis-sentinel"
		addrs := make([]string, len(c.SentinelAddrs))
		for i, a := range c.SentinelAddrs {
			addrs[i] = qualifiedAddr(a, rw.Namespace)
		}
		metadata["addresses"] = strings.Join(addrs, ",")
		metadata["sentinelMaster"] = c.MasterName
		metadata["databaseIndex"] = strconv.Itoa(c.DB)
	}
	if strings.HasPrefix(r.URL, "rediss://") {
		metadata["enableTLS"] = "true"
		if r.TLS != nil && r.TLS.InsecureSkipVerify {
			metadata["unsafeSsl"] = "true"
		}
	}
	var triggers []any
	auth := TriggerAuthentication(rw, o) != nil
	for _, q := range layout.All() {
		md := maps.Clone(metadata)
		md["listName"] = queuestore.PendingKey(q)
		trigger := map[string]any{"type": scaler, "metadata": md}
		if auth {
			trigger["authenticationRef"] = map[string]any{"name": ScalerName(rw)}
		}
		triggers = append(triggers, trigger)
	}
	u := kedaObject(rw, ScaledObjectGVK)
	u.Object["spec"] = map[string]any{
		"scaleTargetRef":  map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": WorkerName(rw)},
		"minReplicaCount": int64(*a.MinReplicas),
		"maxReplicaCount": int64(a.MaxReplicas),
		"triggers":        triggers,
	}
	return u
}

// TriggerAuthentication hands KEDA the Redis password and CA from the Secrets the spec names
// (KEDA reads them itself; nothing secret is in the ScaledObject); nil when the ScaledObject
// needs neither.
func TriggerAuthentication(rw *v1alpha1.ResendWebhook, o Options) *unstructured.Unstructured {
	rw = defaulted(rw)
	if a, _ := workerAutoscaling(rw, o); a == nil {
		return nil
	}
	r := rw.Spec.Queue.Redis
	var refs []any
	add := func(parameter string, ref *v1alpha1.SecretKeyRef) {
		if ref != nil {
			refs = append(refs, map[string]any{"parameter": parameter, "name": ref.Name, "key": ref.Key})
		}
	}
	add("password", r.PasswordSecretRef)
	if r.TLS != nil {
		add("ca", r.TLS.CASecretRef)
	}
	if len(refs) == 0 {
		return nil
	}
	u := kedaObject(rw, TriggerAuthenticationGVK)
	u.Object["spec"] = map[string]any{"secretTargetRef": refs}
	return u
}

// kedaObject is an empty KEDA object of the workers, owned by rw.
func kedaObject(rw *v1alpha1.ResendWebhook, gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	meta := objectMeta(rw, ScalerName(rw), ComponentWorker)
	u.SetName(meta.Name)
	u.SetNamespace(meta.Namespace)
	u.SetLabels(meta.Labels)
	u.SetOwnerReferences(meta.OwnerReferences)
	return u
}

// qualifiedAddr appends the webhook's namespace to a single-label host ("redis:6379" becomes
// "redis.mail:6379"): the pods resolve such a name in their own namespace, but KEDA resolves it
// in its own. IP addresses, localhost and names with a dot are left as they are.
func qualifiedAddr(addr, namespace string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "localhost" || strings.ContainsAny(host, ".:") || net.ParseIP(host) != nil {
		return addr
	}
	return net.JoinHostPort(host+"."+namespace, port)
}
