package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EventType is a Resend webhook event type.
// +kubebuilder:validation:Enum=email.sent;email.delivered;email.bounced;email.complained;email.opened;email.clicked;email.failed;email.delivery_delayed;email.scheduled;email.suppressed;email.received;contact.created;contact.updated;contact.deleted;domain.created;domain.updated;domain.deleted;suppression.added;suppression.removed
type EventType string

// ResendWebhookSpec describes one public webhook endpoint for Resend, the
// queue it feeds and the workers that drain it.
// +kubebuilder:validation:XValidation:rule="!has(self.worker) || !has(self.worker.replicas) || self.worker.replicas == 0 || has(self.worker.sink) || has(self.worker.image)",message="worker needs either sink.url (built-in worker) or image (your own worker built on the SDK)"
// +kubebuilder:validation:XValidation:rule="!has(self.worker) || !has(self.worker.sink) || !has(self.worker.sink.timeout) || !has(self.maxDuration) || !self.worker.sink.timeout.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.maxDuration.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.worker.sink.timeout) <= duration(self.maxDuration)",message="worker.sink.timeout must not be greater than maxDuration, the time one attempt may take"
// +kubebuilder:validation:XValidation:rule="!has(self.queue.dedupWindow) || !has(self.receiver) || !has(self.receiver.tolerance) || !self.queue.dedupWindow.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.receiver.tolerance.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.queue.dedupWindow) - duration(self.receiver.tolerance) >= duration(self.receiver.tolerance)",message="queue.dedupWindow must be at least twice receiver.tolerance: a re-delivery Resend signs within the tolerance must still find its svix-id remembered"
// +kubebuilder:validation:XValidation:rule="!has(self.ingress) || !has(self.gateway)",message="set either ingress or gateway, not both: the endpoint has one public route"
type ResendWebhookSpec struct {
	// SigningSecret names the Secret holding the Svix signing secrets
	// ("whsec_...") that Resend shows for this endpoint.
	// +required
	SigningSecret SigningSecretRef `json:"signingSecret"`

	// Events is an allowlist of event types to enqueue. Other event types are
	// acknowledged with 200, counted in metrics, and dropped. Empty or absent
	// means every event type.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Events []EventType `json:"events,omitempty"`

	// Queue is the Asynq queue on Redis that receivers write to and workers
	// read from.
	// +required
	Queue QueueSpec `json:"queue"`

	// Retry is the policy workers apply when processing an event fails. After
	// failed attempt n (1 = the first attempt) the worker waits
	// min(maxBackoff, R * minBackoff * factor^(n-1)), where R is a random
	// number in [1,2) when randomize is true and 1 otherwise. After
	// maxAttempts failed attempts the event moves to the dead-letter set
	// (Asynq "archived") and stays there until someone replays it. With the
	// defaults (maxAttempts 3, factor 2, minBackoff 1s, maxBackoff 10s,
	// randomize) an event is retried after 1-2s, then after 2-4s.
	// +optional
	// +kubebuilder:default={}
	Retry RetryPolicy `json:"retry,omitempty"`

	// MaxDuration is how long one processing attempt may run before it counts
	// as failed (Asynq Timeout). Go duration syntax, e.g. "60s", "2m".
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",message="maxDuration must be between 1s and 24h"
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`

	// Receiver configures the pods that verify and enqueue incoming webhooks.
	// +optional
	// +kubebuilder:default={}
	Receiver ReceiverSpec `json:"receiver,omitempty"`

	// Ingress exposes the receivers publicly. Absent means no Ingress is
	// created (bring your own).
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// Gateway exposes the receivers through the Gateway API instead: an HTTPRoute
	// (gateway.networking.k8s.io/v1) attached to the given Gateways. Needs the Gateway API CRDs
	// in the cluster; the RouteReady condition says when they are missing. Not together with
	// ingress.
	// +optional
	Gateway *GatewaySpec `json:"gateway,omitempty"`

	// Worker runs pods that process queued events. Absent means no worker
	// Deployment: external consumers read the queue themselves.
	// +optional
	Worker *WorkerSpec `json:"worker,omitempty"`

	// Resend lets the operator register this endpoint with Resend through its API, own the
	// signing secret (written into the Secret named by signingSecret) and rotate it on demand.
	// Absent means you register the endpoint and copy its secret yourself.
	// +optional
	Resend *ResendSpec `json:"resend,omitempty"`
}

// ResendSpec turns on the Resend API integration.
type ResendSpec struct {
	// APIKeySecretRef selects the Secret key holding a Resend API key with full access (the
	// webhooks API needs it). The key defaults to "api-key".
	// +required
	APIKeySecretRef APIKeySecretRef `json:"apiKeySecretRef"`

	// Endpoint is the URL registered with Resend. Defaults to status.url (from the Ingress).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	Endpoint string `json:"endpoint,omitempty"`

	// DeletionPolicy says what happens to the webhook at Resend when this ResendWebhook is
	// deleted: Delete removes it, Retain leaves it (and its signing secret Secret) in place.
	// +optional
	// +kubebuilder:default=Delete
	// +kubebuilder:validation:Enum=Delete;Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// AutoEnable re-enables the endpoint at Resend when Resend disabled it after repeated
	// failed deliveries, once the receivers are ready again.
	// +optional
	// +kubebuilder:default=true
	AutoEnable *bool `json:"autoEnable,omitempty"`
}

// APIKeySecretRef selects the Secret key of a Resend API key.
type APIKeySecretRef struct {
	// Name of the Secret, in the namespace of the ResendWebhook.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key within the Secret; default "api-key".
	// +optional
	// +kubebuilder:default=api-key
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^[-_a-zA-Z0-9][-._a-zA-Z0-9]*$`
	Key string `json:"key,omitempty"`
}

// DeletionPolicy of the webhook registered at Resend.
type DeletionPolicy string

// Deletion policies.
const (
	DeletionPolicyDelete DeletionPolicy = "Delete"
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// SigningSecretRef points at a Secret in the same namespace holding one or
// more signing secrets.
type SigningSecretRef struct {
	// Name of the Secret, in the namespace of the ResendWebhook.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Keys of the Secret whose values are signing secrets ("whsec_..."). A
	// request is accepted when its signature matches any of them, so a secret
	// can be rotated without downtime: add the new key, switch Resend over,
	// then remove the old key.
	// +optional
	// +kubebuilder:default={"signing-secret"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:Pattern=`^[-_a-zA-Z0-9][-._a-zA-Z0-9]*$`
	// +listType=set
	Keys []string `json:"keys,omitempty"`
}

// SecretKeyRef selects one key of a Secret in the same namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key within the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^[-_a-zA-Z0-9][-._a-zA-Z0-9]*$`
	Key string `json:"key"`
}

// QueueSpec selects the Redis server and Asynq queue.
// +kubebuilder:validation:XValidation:rule="has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)",message="queue.name is immutable: events already queued would be stranded; create a new ResendWebhook for a new queue"
type QueueSpec struct {
	// Name of the Asynq queue. Defaults to "<namespace>.<name>" of this
	// ResendWebhook.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[-._:a-zA-Z0-9]+$`
	Name string `json:"name,omitempty"`

	// Redis is the server holding the queue.
	// +required
	Redis RedisSpec `json:"redis"`

	// DedupWindow is how long a delivered event's svix-id is remembered after
	// it completed, so a re-delivery from Resend is acknowledged without being
	// processed twice (Asynq Retention).
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) <= duration('720h'))",message="dedupWindow must be at most 720h (30 days)"
	DedupWindow *metav1.Duration `json:"dedupWindow,omitempty"`

	// Shards spreads the webhook's events over this many Asynq queues, "<name>.<k>" (a suffix
	// "-<s>" may follow so that the shards fall into different parts of a Redis Cluster's hash
	// slots), by a stable hash of svix-id: a re-delivery lands on the same shard and is
	// deduplicated there. Workers consume every shard; status, metrics and dead letters add
	// them up. With 1 (the default) the queue is "<name>" itself. Changing it on a live
	// webhook loses and duplicates nothing: new events go to the new shards while workers
	// drain the old ones, and receivers look a re-delivery up in its old shard, until the old
	// shards are empty and past the dedup window (status.queue.previousShards).
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	Shards *int32 `json:"shards,omitempty"`
}

// EffectiveShards is spec.queue.shards, 1 when unset.
func (q QueueSpec) EffectiveShards() int {
	if q.Shards == nil || *q.Shards < 1 {
		return 1
	}
	return int(*q.Shards)
}

// RedisSpec says how to reach Redis.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || self.url.startsWith('rediss://')",message="tls is only used with a rediss:// url"
// +kubebuilder:validation:XValidation:rule="!(has(self.sentinel) && has(self.cluster))",message="sentinel and cluster are exclusive: a Redis Cluster has no Sentinel"
// +kubebuilder:validation:XValidation:rule="!has(self.cluster) || !self.url.matches('^rediss?://[^/]*/0*[1-9]')",message="a Redis Cluster has only database 0: use a url without a database number"
type RedisSpec struct {
	// URL of Redis: redis://host:port/db, or rediss://host:port/db for TLS.
	// Put no password in it; use passwordSecretRef. With sentinel, only the
	// scheme and db of the URL are used; with cluster, only the scheme.
	// +required
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^rediss?://[^\s]+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^rediss?://[^/@]*:[^/@]*@')",message="url must not contain a password; put it in a Secret and use passwordSecretRef"
	URL string `json:"url"`

	// PasswordSecretRef selects the Secret key holding the Redis password.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`

	// Sentinel switches to Redis Sentinel: the master is looked up by name
	// from these sentinels.
	// +optional
	Sentinel *SentinelSpec `json:"sentinel,omitempty"`

	// Cluster switches to Redis Cluster: receivers, workers, the operator and dlq discover the
	// cluster's nodes from these seed addresses. Password and TLS are as for one server.
	// Each Asynq queue lives in one hash slot; spread a busy webhook with spec.queue.shards.
	// +optional
	Cluster *RedisClusterSpec `json:"cluster,omitempty"`

	// TLS configures verification of the Redis server certificate for
	// rediss:// URLs.
	// +optional
	TLS *RedisTLSSpec `json:"tls,omitempty"`

	// MinReplicas makes receivers wait (Redis WAIT) until each enqueue reached this many
	// Redis replicas before answering 200; when they do not within replicaTimeout the answer
	// is 503 and Resend delivers again. 0 (the default) answers as soon as the primary has it.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// ReplicaTimeout bounds the wait for minReplicas; default "1s".
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('10ms') && duration(self) <= duration('10s'))",message="replicaTimeout must be between 10ms and 10s"
	ReplicaTimeout *metav1.Duration `json:"replicaTimeout,omitempty"`
}

// SentinelSpec locates a Redis master through Sentinel.
type SentinelSpec struct {
	// MasterName is the name of the master set in Sentinel.
	// +required
	// +kubebuilder:validation:MinLength=1
	MasterName string `json:"masterName"`
	// Addrs of the sentinels, "host:port".
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[^\s:]+:[0-9]+$`
	Addrs []string `json:"addrs"`
}

// RedisClusterSpec locates a Redis Cluster.
type RedisClusterSpec struct {
	// Addrs are seed nodes of the cluster, "host:port"; the others are discovered.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[^\s:,]+:[0-9]+$`
	// +listType=atomic
	Addrs []string `json:"addrs"`
}

// RedisTLSSpec configures TLS to Redis.
type RedisTLSSpec struct {
	// CASecretRef selects a PEM bundle of CAs to trust instead of the system
	// CAs.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`
	// InsecureSkipVerify disables certificate verification. Only for testing.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// RetryPolicy decides when a failed event is tried again. After failed
// attempt n (1 = the first attempt) the worker waits min(maxBackoff, R *
// minBackoff * factor^(n-1)), where R is a random number in [1,2) when
// randomize is true and 1 otherwise. After maxAttempts failed attempts the
// event moves to the dead-letter set (Asynq "archived").
// +kubebuilder:validation:XValidation:rule="!has(self.minBackoff) || !has(self.maxBackoff) || !self.minBackoff.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.maxBackoff.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.minBackoff) <= duration(self.maxBackoff)",message="minBackoff must not be greater than maxBackoff"
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included: 1 never
	// retries. After the last failed attempt the event is archived as a dead
	// letter. 1 to 25; default 3.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=25
	MaxAttempts *int32 `json:"maxAttempts,omitempty"`

	// Factor multiplies the delay after each further failed attempt
	// (exponential backoff): with minBackoff 1s and factor 2 the delays are
	// 1s, 2s, 4s, ... up to maxBackoff. 1 keeps the delay constant at
	// minBackoff. An integer from 1 to 10; default 2.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Factor *int32 `json:"factor,omitempty"`

	// MinBackoff is the delay after the first failed attempt, before
	// randomization. A Go duration such as "500ms" or "1s"; at most
	// maxBackoff; default "1s".
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MinBackoff *metav1.Duration `json:"minBackoff,omitempty"`

	// MaxBackoff caps the delay between two attempts, randomization included.
	// A Go duration such as "10s" or "5m"; at most "24h"; default "10s".
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) <= duration('24h'))",message="maxBackoff must be at most 24h"
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`

	// Randomize multiplies each delay by a random factor in [1,2) (capped at
	// maxBackoff) so that many events failing together do not retry in
	// lockstep. Default true.
	// +optional
	// +kubebuilder:default=true
	Randomize *bool `json:"randomize,omitempty"`
}

// PodSettings are the pod-level knobs shared by receivers and workers. The operator keeps
// what it relies on: the container's args, probes, ports and security context, the secret
// volumes it mounts, and the selector labels. Where a setting here meets one of those, the
// operator's value wins (see docs/api.md).
type PodSettings struct {
	// Image overrides the container image. Defaults to the operator's own
	// image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// ImagePullSecrets name Secrets in the same namespace used to pull image.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// ServiceAccountName runs the pods under this ServiceAccount (e.g. for cloud workload
	// identity). Default: the namespace's default ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// AutomountServiceAccountToken mounts the ServiceAccount's API token into the pods.
	// Default false: the operator's own receivers and workers never call the Kubernetes API.
	// +optional
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`
	// PodMetadata adds labels and annotations to the pods (e.g. for a service mesh or cost
	// allocation). The operator's own labels and annotations win on a clash.
	// +optional
	PodMetadata *PodMetadata `json:"podMetadata,omitempty"`
	// PriorityClassName of the pods.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// Resources of the container. Defaults to modest requests.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// NodeSelector for the pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations for the pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Affinity for the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// TopologySpreadConstraints replace the default constraint (spread the pods over nodes,
	// best effort). A constraint without labelSelector selects this component's pods.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
}

// PodMetadata are extra labels and annotations of the pods.
type PodMetadata struct {
	// Labels added to the pods.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations added to the pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ReceiverSpec configures the receiver pods.
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || !has(self.autoscaling.minReplicas) || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",message="autoscaling.minReplicas must not be greater than maxReplicas"
type ReceiverSpec struct {
	// Replicas of the receiver. Ignored when autoscaling is set.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Replicas *int32 `json:"replicas,omitempty"`

	PodSettings `json:",inline"`

	// MaxBodyBytes is the largest request body accepted; larger requests get
	// 413.
	// +optional
	// +kubebuilder:default=1048576
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=67108864
	MaxBodyBytes *int64 `json:"maxBodyBytes,omitempty"`

	// Tolerance is the allowed clock skew between svix-timestamp and the
	// receiver's clock; older or newer requests get 401 (replay protection).
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",message="tolerance must be between 1s and 24h"
	Tolerance *metav1.Duration `json:"tolerance,omitempty"`

	// Autoscaling adds a HorizontalPodAutoscaler on CPU for the receivers.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`
}

// AutoscalingSpec configures a HorizontalPodAutoscaler.
type AutoscalingSpec struct {
	// MinReplicas is the lower bound. Default: 2, or maxReplicas when that is smaller.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the upper bound.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas"`
	// TargetCPUUtilizationPercentage is the average CPU use, in percent of
	// requests, to aim for.
	// +optional
	// +kubebuilder:default=70
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	TargetCPUUtilizationPercentage *int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// CEL rules in markers must not contain two adjacent single quotes (an
// empty CEL string): gofmt rewrites them to a typographic quote in doc
// comments, which CEL cannot parse.

// IngressSpec describes the public endpoint.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || (has(self.host) && size(self.host) > 0)",message="ingress.tls needs ingress.host: certificates are issued for a host name"
type IngressSpec struct {
	// ClassName of the ingress controller. Absent uses the cluster's default
	// class.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ClassName *string `json:"className,omitempty"`
	// Host name Resend posts to, e.g. "hooks.example.com". Absent matches any
	// host. A wildcard host is not accepted: Resend needs one exact URL.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('*')",message="ingress.host must be an exact host name, not a wildcard: Resend posts to one URL"
	Host string `json:"host,omitempty"`
	// Path prefix of the endpoint: absolute, without "//", "/./", "/../", "%2f" or a trailing
	// "/." or "/.." (the rules Kubernetes applies to Ingress paths).
	// +optional
	// +kubebuilder:default="/"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('//') && !self.contains('/./') && !self.contains('/../') && !self.lowerAscii().contains('%2f') && !self.endsWith('/.') && !self.endsWith('/..')",message="ingress.path must not contain '//', '/./', '/../' or '%2f', nor end in '/.' or '/..'"
	Path string `json:"path,omitempty"`
	// TLS terminates HTTPS at the Ingress with the certificate in this Secret.
	// +optional
	TLS *IngressTLS `json:"tls,omitempty"`
	// Annotations added to the Ingress (e.g. for cert-manager or rate limits). The operator
	// may be started with a list of allowed annotation prefixes.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// GatewaySpec describes the HTTPRoute that exposes the receivers through a Gateway.
type GatewaySpec struct {
	// ParentRefs are the Gateways (or listeners of them) the route attaches to. A Gateway in
	// another namespace must allow routes from this one (its listeners' allowedRoutes).
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	ParentRefs []GatewayParentRef `json:"parentRefs"`
	// Hostnames the route answers for, e.g. "hooks.example.com"; the first one is the host of
	// status.url. Absent: the hostnames of the listeners it attaches to. No wildcards: Resend
	// posts to one URL.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hostnames []string `json:"hostnames,omitempty"`
	// Path prefix of the endpoint, with the same rules as ingress.path.
	// +optional
	// +kubebuilder:default="/"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('//') && !self.contains('/./') && !self.contains('/../') && !self.lowerAscii().contains('%2f') && !self.endsWith('/.') && !self.endsWith('/..')",message="gateway.path must not contain '//', '/./', '/../' or '%2f', nor end in '/.' or '/..'"
	Path string `json:"path,omitempty"`
	// Annotations added to the HTTPRoute. The operator may be started with a list of allowed
	// annotation prefixes (the same as for ingress.annotations).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// GatewayParentRef names a Gateway, or one of its listeners, an HTTPRoute attaches to.
type GatewayParentRef struct {
	// Name of the Gateway.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Gateway; default: the namespace of the ResendWebhook.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
	// SectionName attaches to the listener of this name only.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SectionName string `json:"sectionName,omitempty"`
	// Port attaches to the listeners on this port only.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`
}

// IngressTLS names the certificate Secret of the Ingress.
type IngressTLS struct {
	// SecretName of a kubernetes.io/tls Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
}

// WorkerSpec configures the worker pods.
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || !has(self.autoscaling.minReplicas) || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",message="autoscaling.minReplicas must not be greater than maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.volumes) || self.volumes.all(v, !(v.name in ['signing-secrets', 'redis-password', 'redis-ca', 'sink-secret']))",message="worker.volumes must not use the names the operator mounts its secrets under (signing-secrets, redis-password, redis-ca, sink-secret)"
// +kubebuilder:validation:XValidation:rule="!has(self.volumeMounts) || self.volumeMounts.all(m, !m.mountPath.startsWith('/etc/rwh'))",message="worker.volumeMounts must not mount under /etc/rwh, where the operator mounts its secrets"
type WorkerSpec struct {
	// Replicas of the worker. Ignored when autoscaling is set and KEDA is installed.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Replicas *int32 `json:"replicas,omitempty"`

	// Concurrency is how many events one worker pod processes at once.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Concurrency *int32 `json:"concurrency,omitempty"`

	PodSettings `json:",inline"`

	// Autoscaling lets KEDA scale the workers on the queue's backlog (the Asynq pending list in
	// Redis) instead of replicas. Needs KEDA's CRDs (keda.sh/v1alpha1) in the cluster; without
	// them the workers keep replicas and the WorkerAutoscalerReady condition says why.
	// +optional
	Autoscaling *WorkerAutoscalingSpec `json:"autoscaling,omitempty"`

	// Sink is where the built-in worker POSTs each event. Leave it out when
	// image runs your own worker.
	// +optional
	Sink *SinkSpec `json:"sink,omitempty"`

	// CircuitBreaker holds deliveries while the sink looks down, so an outage does not burn
	// the events' retry budget. On by default.
	// +optional
	// +kubebuilder:default={}
	CircuitBreaker CircuitBreakerSpec `json:"circuitBreaker,omitempty"`

	// Env adds environment variables to the worker container (e.g. credentials your own
	// worker needs). Variables named RWH_* are ignored by the binary when the matching flag is
	// rendered by the operator: its args win.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Env []corev1.EnvVar `json:"env,omitempty"`
	// EnvFrom adds environment variables from ConfigMaps or Secrets.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`
	// Volumes adds volumes to the worker pods.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Volumes []corev1.Volume `json:"volumes,omitempty"`
	// VolumeMounts mounts volumes into the worker container.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
}

// WorkerAutoscalingSpec configures a KEDA ScaledObject for the workers.
type WorkerAutoscalingSpec struct {
	// MinReplicas is the lower bound; default 1. At least 1: a worker also moves retries and
	// scheduled events into the pending list when they are due, so with no worker they would
	// wait for the next new event.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the upper bound.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas"`
	// PendingPerReplica is the target backlog of one worker: KEDA aims for this many pending
	// events per replica (the redis scaler's listLength); default 100.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	PendingPerReplica *int32 `json:"pendingPerReplica,omitempty"`
}

// CircuitBreakerSpec configures how a worker reacts to a sink that looks down. After
// failureThreshold consecutive deliveries failed in a way that says the sink is down
// (connection refused or reset, timeout, 502, 503, 504, 429) the worker stops taking events:
// they stay queued and no attempt is counted. It probes with one real delivery after
// probeInterval, doubling up to maxProbeInterval (or after the sink's Retry-After), and
// resumes when a probe succeeds. Once the breaker has been open for maxHold, events are tried
// again under the normal retry policy and end as dead letters if the sink stays down.
// +kubebuilder:validation:XValidation:rule="!has(self.probeInterval) || !has(self.maxProbeInterval) || !self.probeInterval.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.maxProbeInterval.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.probeInterval) <= duration(self.maxProbeInterval)",message="circuitBreaker.probeInterval must not be greater than maxProbeInterval"
type CircuitBreakerSpec struct {
	// Enabled turns the breaker on; default true.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`
	// FailureThreshold is how many consecutive sink-down failures open the breaker; default 5.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	FailureThreshold *int32 `json:"failureThreshold,omitempty"`
	// ProbeInterval is the wait before the first probe; default "2s".
	// +optional
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('1h'))",message="circuitBreaker.probeInterval must be between 100ms and 1h"
	ProbeInterval *metav1.Duration `json:"probeInterval,omitempty"`
	// MaxProbeInterval caps the doubling wait between probes; default "1m".
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('1h'))",message="circuitBreaker.maxProbeInterval must be between 100ms and 1h"
	MaxProbeInterval *metav1.Duration `json:"maxProbeInterval,omitempty"`
	// MaxHold is the breaker's horizon: how long it holds events while the sink stays down.
	// After it, events are tried under the normal retry policy (and become dead letters if
	// the sink is still down); default "24h".
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('720h'))",message="circuitBreaker.maxHold must be between 1s and 720h"
	MaxHold *metav1.Duration `json:"maxHold,omitempty"`
}

// SinkSpec is an HTTP endpoint that receives each event.
type SinkSpec struct {
	// URL the worker POSTs events to.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	URL string `json:"url"`
	// Timeout of one POST; a slower sink counts as a failed attempt. At most
	// maxDuration; default "10s".
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('1h'))",message="sink.timeout must be between 100ms and 1h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// SigningSecretRef selects a "whsec_..." secret the worker signs each POST
	// with (Standard Webhooks / Svix scheme), so the sink can verify it.
	// +optional
	SigningSecretRef *SecretKeyRef `json:"signingSecretRef,omitempty"`
}

// ResendWebhookStatus is what the operator observed.
type ResendWebhookStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, SecretResolved, ReceiverAvailable, WorkerAvailable,
	// IngressReady, RouteReady, WorkerAutoscalerReady, QueueReachable, SinkAvailable,
	// QueueDurable, Registered.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// URL is the public endpoint to register in Resend, from the Ingress or the HTTPRoute and
	// its Gateway's listener.
	// +optional
	URL string `json:"url,omitempty"`

	// Receiver reports the receiver pods.
	// +optional
	Receiver ComponentStatus `json:"receiver,omitempty"`

	// Worker reports the worker pods.
	// +optional
	Worker ComponentStatus `json:"worker,omitempty"`

	// Queue reports the queue's figures.
	// +optional
	Queue QueueStatus `json:"queue"`

	// Resend reports the endpoint registered at Resend (only with spec.resend).
	// +optional
	Resend *ResendStatus `json:"resend,omitempty"`
}

// ResendStatus is what the operator knows of the webhook registered at Resend.
type ResendStatus struct {
	// WebhookID is Resend's id of the registered webhook.
	// +optional
	WebhookID string `json:"webhookID,omitempty"`
	// State is the webhook's state at Resend: enabled or disabled.
	// +optional
	State string `json:"state,omitempty"`
	// Endpoint is the URL registered at Resend.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Events are the event types registered at Resend.
	// +optional
	// +listType=atomic
	Events []string `json:"events,omitempty"`
	// LastRotationTime is when the signing secret was last rotated through the API.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	// LastRotationRequest is the value of the rotate-signing-secret annotation last acted on.
	// +optional
	LastRotationRequest string `json:"lastRotationRequest,omitempty"`
	// PreviousSecretExpiresAt is when receivers stop accepting the secret that was current
	// before the last rotation (the end of Resend's dual-signing window).
	// +optional
	PreviousSecretExpiresAt *metav1.Time `json:"previousSecretExpiresAt,omitempty"`
}

// Annotations the operator acts on.
const (
	// AnnotationRotateSigningSecret: changing its value (to anything new) rotates the signing
	// secret once through Resend's API (with spec.resend).
	AnnotationRotateSigningSecret = "webhooks.resend-operator.dev/rotate-signing-secret"
)

// ComponentStatus reports a Deployment.
type ComponentStatus struct {
	// ReadyReplicas is the number of ready pods.
	ReadyReplicas int32 `json:"readyReplicas"`
}

// QueueStatus reports the size of each Asynq state of the queue.
type QueueStatus struct {
	// Name of the queue.
	// +optional
	Name string `json:"name,omitempty"`
	// Pending tasks wait for a worker (including events a worker's circuit breaker set aside
	// while the sink is down).
	Pending int64 `json:"pending"`
	// Active tasks are being processed.
	Active int64 `json:"active"`
	// Scheduled tasks wait for their time.
	Scheduled int64 `json:"scheduled"`
	// Retry tasks failed and wait for their next attempt.
	Retry int64 `json:"retry"`
	// Archived are dead letters: events that exhausted their attempts or failed permanently.
	// They stay until someone replays or deletes them (resend-webhook-operator dlq).
	Archived int64 `json:"archived"`
	// Shards is the number of shards new events are spread over (the figures above add up
	// all of them, and those of previousShards).
	// +optional
	Shards int32 `json:"shards,omitempty"`
	// PreviousShards are earlier values of spec.queue.shards whose queues still hold tasks or
	// remember svix-ids: workers drain them and receivers look re-deliveries up in them.
	// +optional
	// +listType=set
	PreviousShards []int32 `json:"previousShards,omitempty"`
}

// ResendWebhook runs a verified, queued endpoint for Resend's webhooks.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rwh,categories=resend
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.status.queue.name`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.queue.pending`
// +kubebuilder:printcolumn:name="Dead",type=integer,JSONPath=`.status.queue.archived`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ResendWebhook struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ResendWebhookSpec `json:"spec"`
	// +optional
	Status ResendWebhookStatus `json:"status,omitempty"`
}

// ResendWebhookList is a list of ResendWebhooks.
// +kubebuilder:object:root=true
type ResendWebhookList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ResendWebhook `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ResendWebhook{}, &ResendWebhookList{})
}
