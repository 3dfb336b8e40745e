package v1alpha1_test

import (
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// baseSpec is the smallest valid spec; each case below merges its YAML over it, the way a user
// would write a manifest. A null value removes a field of baseSpec.
const baseSpec = `
signingSecret: {name: resend-signing-secret}
queue: {redis: {url: "redis://127.0.0.1:6379/0"}}
`

// specObject builds an unstructured ResendWebhook from baseSpec with override merged over it.
func specObject(t *testing.T, name, override string) *unstructured.Unstructured {
	t.Helper()
	spec := parseYAMLMap(t, baseSpec)
	mergeInto(spec, parseYAMLMap(t, override))
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(webhooksv1alpha1.GroupVersion.WithKind("ResendWebhook"))
	u.SetName(name)
	return u
}

func parseYAMLMap(t *testing.T, s string) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test YAML %q: %v", s, err)
	}
	return m
}

// mergeInto merges src over dst: maps merge recursively, anything else replaces.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		sub, isMap := v.(map[string]any)
		existing, dstIsMap := dst[k].(map[string]any)
		if isMap && dstIsMap {
			mergeInto(existing, sub)
			continue
		}
		dst[k] = v
	}
}

// TestInvalidObjectsAreRejected proves the API server refuses nonsense at apply time, each time
// with the field path and the message a user needs to fix the manifest.
func TestInvalidObjectsAreRejected(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cases := []struct {
		name string
		spec string
		// want are substrings of the API server's answer: the field path and the explanation.
		want []string
	}{
		{
			name: "minBackoff greater than maxBackoff",
			spec: `retry: {minBackoff: 30s, maxBackoff: 10s}`,
			want: []string{"spec.retry", "minBackoff must not be greater than maxBackoff"},
		},
		{
			name: "minBackoff greater than the default maxBackoff",
			spec: `retry: {minBackoff: 1m}`,
			want: []string{"spec.retry", "minBackoff must not be greater than maxBackoff"},
		},
		{
			name: "maxAttempts 0",
			spec: `retry: {maxAttempts: 0}`,
			want: []string{"spec.retry.maxAttempts", "should be greater than or equal to 1"},
		},
		{
			name: "maxAttempts 26",
			spec: `retry: {maxAttempts: 26}`,
			want: []string{"spec.retry.maxAttempts", "should be less than or equal to 25"},
		},
		{
			name: "factor 0",
			spec: `retry: {factor: 0}`,
			want: []string{"spec.retry.factor", "should be greater than or equal to 1"},
		},
		{
			name: "fractional factor",
			spec: `retry: {factor: 1.5}`,
			want: []string{"spec.retry.factor", "must be of type integer"},
		},
		{
			name: "empty signingSecret.keys",
			spec: `signingSecret: {keys: []}`,
			want: []string{"spec.signingSecret.keys", "should have at least 1 items"},
		},
		{
			// The receiver skips dot-files in its secrets directory: such a key would never load.
			name: "signingSecret key starting with a dot",
			spec: `signingSecret: {keys: [.hidden]}`,
			want: []string{"spec.signingSecret.keys[0]", "should match"},
		},
		{
			name: "missing signingSecret.name",
			spec: `signingSecret: {name: null}`,
			want: []string{"spec.signingSecret.name", "Required value"},
		},
		{
			name: "unknown event type",
			spec: `events: [email.bounced, email.exploded]`,
			want: []string{"spec.events[1]", `Unsupported value: "email.exploded"`, `"email.delivered"`},
		},
		{
			name: "negative receiver replicas",
			spec: `receiver: {replicas: -1}`,
			want: []string{"spec.receiver.replicas", "should be greater than or equal to 0"},
		},
		{
			name: "negative worker replicas",
			spec: `worker: {replicas: -1, sink: {url: "http://sink"}}`,
			want: []string{"spec.worker.replicas", "should be greater than or equal to 0"},
		},
		{
			name: "malformed dedupWindow",
			spec: `queue: {dedupWindow: 1 day}`,
			want: []string{"spec.queue.dedupWindow", "should match"},
		},
		{
			name: "malformed minBackoff",
			spec: `retry: {minBackoff: soon}`,
			want: []string{"spec.retry.minBackoff", "should match"},
		},
		{
			name: "malformed sink timeout and maxDuration",
			spec: `{maxDuration: a minute, worker: {sink: {url: "http://sink", timeout: 5 s}}}`,
			want: []string{"spec.maxDuration", "spec.worker.sink.timeout", "should match"},
		},
		{
			name: "dedupWindow beyond 30 days",
			spec: `queue: {dedupWindow: 1000h}`,
			want: []string{"spec.queue.dedupWindow", "dedupWindow must be at most 720h (30 days)"},
		},
		{
			name: "missing queue.redis",
			spec: `queue: {redis: null}`,
			want: []string{"spec.queue.redis", "Required value"},
		},
		{
			name: "password in redis url",
			spec: `queue: {redis: {url: "redis://:hunter2@redis:6379/0"}}`,
			want: []string{"spec.queue.redis.url", "url must not contain a password; put it in a Secret and use passwordSecretRef"},
		},
		{
			name: "user and password in redis url",
			spec: `queue: {redis: {url: "rediss://app:hunter2@redis:6380/0"}}`,
			want: []string{"spec.queue.redis.url", "url must not contain a password"},
		},
		{
			name: "redis url with another scheme",
			spec: `queue: {redis: {url: "http://redis:6379"}}`,
			want: []string{"spec.queue.redis.url", "should match"},
		},
		{
			name: "sentinel and cluster together",
			spec: `queue: {redis: {sentinel: {masterName: m, addrs: ["s:26379"]}, cluster: {addrs: ["n1:6379"]}}}`,
			want: []string{"spec.queue.redis", "sentinel and cluster are exclusive"},
		},
		{
			name: "cluster with a database number",
			spec: `queue: {redis: {url: "redis://n1:6379/2", cluster: {addrs: ["n1:6379"]}}}`,
			want: []string{"spec.queue.redis", "a Redis Cluster has only database 0"},
		},
		{
			name: "cluster without addresses",
			spec: `queue: {redis: {cluster: {addrs: []}}}`,
			want: []string{"spec.queue.redis.cluster.addrs", "should have at least 1 items"},
		},
		{
			name: "cluster address without port",
			spec: `queue: {redis: {cluster: {addrs: ["n1"]}}}`,
			want: []string{"spec.queue.redis.cluster.addrs[0]", "should match"},
		},
		{
			name: "shards out of range",
			spec: `queue: {shards: 65}`,
			want: []string{"spec.queue.shards", "should be less than or equal to 64"},
		},
		{
			name: "zero shards",
			spec: `queue: {shards: 0}`,
			want: []string{"spec.queue.shards", "should be greater than or equal to 1"},
		},
		{
			name: "tls with a redis:// url",
			spec: `queue: {redis: {tls: {insecureSkipVerify: true}}}`,
			want: []string{"spec.queue.redis", "tls is only used with a rediss:// url"},
		},
		{
			name: "ingress tls without host",
			spec: `ingress: {tls: {secretName: hooks-tls}}`,
			want: []string{"spec.ingress", "ingress.tls needs ingress.host"},
		},
		{
			name: "ingress path without leading slash",
			spec: `ingress: {path: hooks}`,
			want: []string{"spec.ingress.path", "should match"},
		},
		{
			name: "autoscaling minReplicas greater than maxReplicas",
			spec: `receiver: {autoscaling: {minReplicas: 5, maxReplicas: 3}}`,
			want: []string{"spec.receiver", "autoscaling.minReplicas must not be greater than maxReplicas"},
		},
		{
			name: "autoscaling minReplicas above maxReplicas",
			spec: `receiver: {autoscaling: {minReplicas: 3, maxReplicas: 2}}`,
			want: []string{"spec.receiver", "autoscaling.minReplicas must not be greater than maxReplicas"},
		},
		{
			name: "autoscaling without maxReplicas",
			spec: `receiver: {autoscaling: {minReplicas: 2}}`,
			want: []string{"spec.receiver.autoscaling.maxReplicas", "Required value"},
		},
		{
			name: "worker with neither sink nor image",
			spec: `worker: {concurrency: 5}`,
			want: []string{"spec", "worker needs either sink.url (built-in worker) or image (your own worker built on the SDK)"},
		},
		{
			name: "sink url not http",
			spec: `worker: {sink: {url: "ftp://sink"}}`,
			want: []string{"spec.worker.sink.url", "should match"},
		},
		{
			name: "sink timeout longer than maxDuration",
			spec: `{maxDuration: 30s, worker: {sink: {url: "http://sink", timeout: 45s}}}`,
			want: []string{"spec", "worker.sink.timeout must not be greater than maxDuration"},
		},
		{
			name: "maxDuration zero",
			spec: `maxDuration: 0s`,
			want: []string{"spec.maxDuration", "maxDuration must be between 1s and 24h"},
		},
		{
			name: "receiver tolerance above a day",
			spec: `receiver: {tolerance: 48h}`,
			want: []string{"spec.receiver.tolerance", "tolerance must be between 1s and 24h"},
		},
		{
			name: "maxBodyBytes below 1 KiB",
			spec: `receiver: {maxBodyBytes: 100}`,
			want: []string{"spec.receiver.maxBodyBytes", "should be greater than or equal to 1024"},
		},
		{
			name: "sentinel without addresses",
			spec: `queue: {redis: {sentinel: {masterName: mymaster, addrs: []}}}`,
			want: []string{"spec.queue.redis.sentinel.addrs", "should have at least 1 items"},
		},
		{
			name: "dedupWindow shorter than twice the tolerance",
			spec: `{queue: {dedupWindow: 9m}, receiver: {tolerance: 5m}}`,
			want: []string{"spec", "queue.dedupWindow must be at least twice receiver.tolerance"},
		},
		{
			name: "wildcard ingress host",
			spec: `ingress: {host: "*.hooks.example.com"}`,
			want: []string{"spec.ingress.host", "not a wildcard"},
		},
		{
			name: "ingress path climbing up",
			spec: `ingress: {path: /hooks/../admin}`,
			want: []string{"spec.ingress.path", "must not contain '//', '/./', '/../'"},
		},
		{
			name: "ingress path with an encoded slash",
			spec: `ingress: {path: /hooks%2Fadmin}`,
			want: []string{"spec.ingress.path", "%2f"},
		},
		{
			name: "ingress className that is no DNS name",
			spec: `ingress: {className: "Nginx_Public"}`,
			want: []string{"spec.ingress.className", "should match"},
		},
		{
			name: "worker volume named like an operator volume",
			spec: `worker: {image: x, volumes: [{name: redis-password, emptyDir: {}}]}`,
			want: []string{"spec.worker", "must not use the names the operator mounts"},
		},
		{
			name: "worker mount over the operator's secrets",
			spec: `worker: {image: x, volumes: [{name: data, emptyDir: {}}], volumeMounts: [{name: data, mountPath: /etc/rwh/redis}]}`,
			want: []string{"spec.worker", "must not mount under /etc/rwh"},
		},
		{
			name: "breaker probe interval above its cap",
			spec: `worker: {image: x, circuitBreaker: {probeInterval: 2m, maxProbeInterval: 1m}}`,
			want: []string{"spec.worker.circuitBreaker", "probeInterval must not be greater than maxProbeInterval"},
		},
		{
			name: "replica timeout out of range",
			spec: `queue: {redis: {minReplicas: 1, replicaTimeout: 1m}}`,
			want: []string{"spec.queue.redis.replicaTimeout", "between 10ms and 10s"},
		},
		{
			name: "ingress and gateway together",
			spec: `{ingress: {host: hooks.example.com}, gateway: {parentRefs: [{name: public}]}}`,
			want: []string{"spec", "set either ingress or gateway, not both"},
		},
		{
			name: "gateway without parents",
			spec: `gateway: {parentRefs: []}`,
			want: []string{"spec.gateway.parentRefs", "should have at least 1 items"},
		},
		{
			name: "wildcard gateway hostname",
			spec: `gateway: {parentRefs: [{name: public}], hostnames: ["*.example.com"]}`,
			want: []string{"spec.gateway.hostnames[0]", "should match"},
		},
		{
			name: "gateway path climbing up",
			spec: `gateway: {parentRefs: [{name: public}], path: /hooks/../admin}`,
			want: []string{"spec.gateway.path", "gateway.path must not contain"},
		},
		{
			name: "gateway listener port out of range",
			spec: `gateway: {parentRefs: [{name: public, port: 70000}]}`,
			want: []string{"spec.gateway.parentRefs[0].port", "should be less than or equal to 65535"},
		},
		{
			name: "worker autoscaling to zero",
			spec: `worker: {image: x, autoscaling: {minReplicas: 0, maxReplicas: 4}}`,
			want: []string{"spec.worker.autoscaling.minReplicas", "should be greater than or equal to 1"},
		},
		{
			name: "worker autoscaling min above max",
			spec: `worker: {image: x, autoscaling: {minReplicas: 5, maxReplicas: 4}}`,
			want: []string{"spec.worker", "autoscaling.minReplicas must not be greater than maxReplicas"},
		},
		{
			name: "worker autoscaling without maxReplicas",
			spec: `worker: {image: x, autoscaling: {pendingPerReplica: 10}}`,
			want: []string{"spec.worker.autoscaling.maxReplicas", "Required value"},
		},
		{
			name: "unknown deletion policy",
			spec: `resend: {apiKeySecretRef: {name: resend}, deletionPolicy: Orphan}`,
			want: []string{"spec.resend.deletionPolicy", "Unsupported value"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obj := specObject(t, fmt.Sprintf("invalid-%d", i), tc.spec)
			obj.SetNamespace(ns)
			err := k8sClient.Create(testContext(t), obj)
			if err == nil {
				t.Fatalf("object was accepted; want rejection mentioning %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			t.Log(err) // with -v: the messages docs/api.md quotes
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			// A CEL rule tripping over a value the schema already rejected only adds noise.
			for _, noise := range []string{"type conversion error", "no such overload", "evaluation error"} {
				if strings.Contains(err.Error(), noise) {
					t.Errorf("error carries CEL noise %q:\n%v", noise, err)
				}
			}
		})
	}
}

// TestUnknownFieldsAreRejected: kubectl apply validates strictly by default, so a typo in a field
// name must fail loudly instead of being pruned silently.
func TestUnknownFieldsAreRejected(t *testing.T) {
	t.Parallel()
	obj := specObject(t, "typo", `retry: {maxAttempt: 5}`)
	obj.SetNamespace(newNamespace(t))
	err := k8sClient.Create(testContext(t), obj, client.FieldValidation(metav1.FieldValidationStrict))
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.retry.maxAttempt"`) {
		t.Fatalf("want unknown field error for spec.retry.maxAttempt, got %v", err)
	}
}

// TestValidEdgeCasesAreAccepted guards against rules that are stricter than documented.
func TestValidEdgeCasesAreAccepted(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cases := map[string]string{
		"minBackoff equal to maxBackoff":      `retry: {minBackoff: 10s, maxBackoff: 10s, factor: 1, randomize: false}`,
		"a single attempt":                    `retry: {maxAttempts: 1}`,
		"maxAttempts 25":                      `retry: {maxAttempts: 25, maxBackoff: 24h}`,
		"rediss with tls and CA":              `queue: {redis: {url: "rediss://redis.cache:6380/2", tls: {caSecretRef: {name: redis-ca, key: ca.crt}}, passwordSecretRef: {name: redis, key: password}}}`,
		"redis username without password":     `queue: {redis: {url: "redis://default@redis:6379/0"}}`,
		"sentinel":                            `queue: {redis: {url: "redis://ignored:6379/1", sentinel: {masterName: mymaster, addrs: ["s1:26379", "s2:26379"]}}}`,
		"compound durations":                  `{maxDuration: 1m30s, queue: {dedupWindow: 1.5h}, receiver: {tolerance: 90s}}`,
		"worker scaled to zero":               `worker: {replicas: 0}`,
		"worker with own image":               `worker: {image: "registry.example.com/acme/rwh-worker:1.0"}`,
		"ingress tls with host":               `ingress: {host: hooks.example.com, path: /resend, className: nginx, tls: {secretName: hooks-tls}}`,
		"every event type":                    `events: [email.sent, email.delivered, email.bounced, email.complained, email.opened, email.clicked, email.failed, email.delivery_delayed, email.scheduled, email.suppressed, email.received, contact.created, contact.updated, contact.deleted, domain.created, domain.updated, domain.deleted, suppression.added, suppression.removed]`,
		"rotation with two keys":              `signingSecret: {keys: [signing-secret, signing-secret-next]}`,
		"autoscaling equal bounds":            `receiver: {autoscaling: {minReplicas: 3, maxReplicas: 3}}`,
		"autoscaling up to one replica":       `receiver: {autoscaling: {maxReplicas: 1}}`,
		"dedupWindow exactly twice tolerance": `{queue: {dedupWindow: 10m}, receiver: {tolerance: 5m}}`,
		"replica acknowledgement":             `queue: {redis: {minReplicas: 1, replicaTimeout: 500ms}}`,
		"pod settings":                        `{receiver: {serviceAccountName: hooks, priorityClassName: high, imagePullSecrets: [{name: regcred}], podMetadata: {labels: {team: mail}, annotations: {a: b}}, topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}]}, worker: {image: x, env: [{name: DB_URL, valueFrom: {secretKeyRef: {name: db, key: url}}}], envFrom: [{configMapRef: {name: cfg}}], volumes: [{name: data, emptyDir: {}}], volumeMounts: [{name: data, mountPath: /data}]}}`,
		"resend integration":                  `resend: {apiKeySecretRef: {name: resend, key: key}, endpoint: "https://hooks.example.com/resend", deletionPolicy: Retain, autoEnable: false}`,
		"gateway route":                       `gateway: {parentRefs: [{name: public, namespace: gateways, sectionName: https, port: 443}, {name: internal}], hostnames: [hooks.example.com, hooks.example.org], path: /resend, annotations: {a: b}}`,
		"worker autoscaling":                  `worker: {sink: {url: "http://sink/x"}, autoscaling: {minReplicas: 2, maxReplicas: 2, pendingPerReplica: 1}}`,
		"redis cluster, sharded":              `queue: {shards: 64, redis: {url: "rediss://ignored:6379", cluster: {addrs: ["n1.redis:6379", "10.0.0.2:7000"]}, minReplicas: 1}}`,
		"redis cluster, db 0":                 `queue: {shards: 1, redis: {url: "redis://ignored:6379/0", cluster: {addrs: ["n1:6379"]}}}`,
		"breaker tuned":                       `worker: {sink: {url: "http://sink/x"}, circuitBreaker: {enabled: false, failureThreshold: 1, probeInterval: 100ms, maxProbeInterval: 1h, maxHold: 1s}}`,
	}
	i := 0
	for name, spec := range cases {
		obj := specObject(t, fmt.Sprintf("valid-%d", i), spec)
		i++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			obj.SetNamespace(ns)
			if err := k8sClient.Create(testContext(t), obj); err != nil {
				t.Fatalf("valid object rejected: %v", err)
			}
		})
	}
}

// TestQueueNameIsImmutable: changing, setting or clearing queue.name on a live webhook would
// strand the events already queued under the old name.
func TestQueueNameIsImmutable(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	for i, tc := range []struct{ from, to string }{
		{`queue: {name: orders}`, `queue: {name: orders-v2}`},
		{`queue: {name: orders}`, `queue: {name: null}`},
		{`{}`, `queue: {name: orders}`},
	} {
		obj := specObject(t, fmt.Sprintf("queue-%d", i), tc.from)
		obj.SetNamespace(ns)
		if err := k8sClient.Create(testContext(t), obj); err != nil {
			t.Fatalf("create %s: %v", tc.from, err)
		}
		changed := specObject(t, obj.GetName(), tc.to)
		changed.SetNamespace(ns)
		changed.SetResourceVersion(obj.GetResourceVersion())
		err := k8sClient.Update(testContext(t), changed)
		if err == nil || !strings.Contains(err.Error(), "queue.name is immutable") {
			t.Errorf("%s → %s: want the immutability message, got %v", tc.from, tc.to, err)
		}
	}
	// Any other change of the queue section stays allowed.
	obj := specObject(t, "queue-ok", `queue: {name: orders}`)
	obj.SetNamespace(ns)
	if err := k8sClient.Create(testContext(t), obj); err != nil {
		t.Fatal(err)
	}
	changed := specObject(t, obj.GetName(), `queue: {name: orders, dedupWindow: 48h}`)
	changed.SetNamespace(ns)
	changed.SetResourceVersion(obj.GetResourceVersion())
	if err := k8sClient.Update(testContext(t), changed); err != nil {
		t.Errorf("changing dedupWindow with the same queue.name: %v", err)
	}
}
