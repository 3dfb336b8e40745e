// Package render turns a ResendWebhook into the Kubernetes objects that run it. Every function
// is pure: same input, same output, no client, no clock, so the objects can be golden-tested
// and server-side applied without spurious diffs.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// Names, ports and paths shared with the receiver and worker (team contract).
const (
	ComponentReceiver = "receiver"
	ComponentWorker   = "worker"

	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	AppName        = "resend-webhook"
	ManagerName    = "resend-webhook-operator"

	// ConfigHashAnnotation on the pod template changes whenever the rendered pod changes, so a
	// spec change rolls the pods. Signing and sink secret contents are not part of it: the
	// receiver rescans its mounted signing keys and the worker re-reads the sink secret.
	ConfigHashAnnotation = "webhooks.resend-operator.dev/config-hash"
	// RedisSecretsAnnotation on the pod template is a digest of the Redis password and CA
	// values (Options.RedisSecretsDigest). Receivers and workers read those files once at
	// start, so a rotation must roll the pods.
	RedisSecretsAnnotation = "webhooks.resend-operator.dev/redis-secrets-digest"

	PortWebhook     = "webhook"
	PortAdmin       = "admin"
	WebhookPort     = 8080
	AdminPort       = 9090
	ServicePort     = 80
	ServicePortName = "http"

	// SecretsRoot holds every secret the operator mounts; user mounts never go below it.
	SecretsRoot   = "/etc/rwh"
	SigningDir    = "/etc/rwh/signing"
	RedisDir      = "/etc/rwh/redis"
	RedisCADir    = "/etc/rwh/redis-ca"
	SinkDir       = "/etc/rwh/sink"
	RedisPassFile = "password"
	RedisCAFile   = "ca.crt"
	SinkFile      = "secret"

	// NonRootUID is the distroless "nonroot" user the image runs as.
	NonRootUID = 65532
)

// Options are the operator-wide settings that are not in the ResendWebhook.
type Options struct {
	// Image is the default image of receiver and worker pods (the operator's own image).
	Image string
	// RedisSecretsDigest is RedisSecretsDigest of the referenced Redis password and CA
	// values; empty when the webhook references neither.
	RedisSecretsDigest string
	// GatewayAPI says the cluster serves the Gateway API's HTTPRoute: without it no HTTPRoute is
	// rendered (nor looked for to delete).
	GatewayAPI bool
	// KEDA says the cluster serves KEDA's ScaledObject and TriggerAuthentication: without it
	// spec.worker.autoscaling cannot act, so no ScaledObject is rendered and the workers keep
	// spec.worker.replicas.
	KEDA bool
}

// RedisSecretsDigest is a short digest of the Redis password and CA values (nil when absent),
// for Options.RedisSecretsDigest: it identifies a rotation without revealing the secret.
func RedisSecretsDigest(password, ca []byte) string {
	h := sha256.New()
	for _, v := range [][]byte{password, ca} {
		h.Write([]byte(strconv.Itoa(len(v)) + ":"))
		h.Write(v)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// PreviousSigningKey is the key of the signing Secret that holds, with spec.resend, the secret
// the last rotation replaced, while Resend still signs with it.
func PreviousSigningKey(key string) string { return key + ".previous" }

// ReceiverName is the name of the receiver Deployment, Service, PDB and HPA.
func ReceiverName(rw *v1alpha1.ResendWebhook) string { return rw.Name + "-receiver" }

// WorkerName is the name of the worker Deployment.
func WorkerName(rw *v1alpha1.ResendWebhook) string { return rw.Name + "-worker" }

// IngressName is the name of the Ingress.
func IngressName(rw *v1alpha1.ResendWebhook) string { return rw.Name }

// defaulted returns a deep copy with every CRD default filled in, so rendering never depends
// on whether the object went through the API server.
func defaulted(rw *v1alpha1.ResendWebhook) *v1alpha1.ResendWebhook {
	c := rw.DeepCopy()
	c.Default()
	return c
}

// Labels are the labels of every object of one component.
func Labels(rw *v1alpha1.ResendWebhook, component string) map[string]string {
	l := SelectorLabels(rw, component)
	l[LabelManagedBy] = ManagerName
	return l
}

// SelectorLabels select the pods of one component; they never change after creation.
func SelectorLabels(rw *v1alpha1.ResendWebhook, component string) map[string]string {
	return map[string]string{
		LabelName:      AppName,
		LabelInstance:  rw.Name,
		LabelComponent: component,
	}
}

// objectMeta is the metadata of a child object, owned (controller=true) by rw.
func objectMeta(rw *v1alpha1.ResendWebhook, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       rw.Namespace,
		Labels:          Labels(rw, component),
		OwnerReferences: []metav1.OwnerReference{OwnerReference(rw)},
	}
}

// OwnerReference makes rw the controlling owner, so deleting it garbage-collects its children.
func OwnerReference(rw *v1alpha1.ResendWebhook) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         v1alpha1.GroupVersion.String(),
		Kind:               "ResendWebhook",
		Name:               rw.Name,
		UID:                rw.UID,
		Controller:         new(true),
		BlockOwnerDeletion: new(true),
	}
}

// configHash is a short digest of the rendered pod spec and its labels.
func configHash(tpl corev1.PodTemplateSpec) string {
	b, err := json.Marshal(tpl)
	if err != nil { // cannot happen for API types; a constant keeps rendering pure
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// withConfigHash sets the config-hash annotation on a pod template (computed without it), and
// the Redis secrets digest when there is one (part of the hash too).
func withConfigHash(tpl corev1.PodTemplateSpec, o Options) corev1.PodTemplateSpec {
	ann := maps.Clone(tpl.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	if o.RedisSecretsDigest != "" {
		ann[RedisSecretsAnnotation] = o.RedisSecretsDigest
		tpl.Annotations = ann
	}
	ann[ConfigHashAnnotation] = configHash(tpl)
	tpl.Annotations = ann
	return tpl
}
