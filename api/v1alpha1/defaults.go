package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults of the API. The CRD applies the same values through +kubebuilder:default markers; Go
// code uses these when it meets an object that did not pass through the API server (tests,
// renderers), and a test keeps both in step.
const (
	DefaultSigningSecretKey = "signing-secret"
	DefaultDedupWindow      = 24 * time.Hour
	DefaultMaxAttempts      = 3
	DefaultBackoffFactor    = 2
	DefaultMinBackoff       = time.Second
	DefaultMaxBackoff       = 10 * time.Second
	DefaultRandomize        = true
	DefaultMaxDuration      = 60 * time.Second
	DefaultReceiverReplicas = 2
	DefaultMaxBodyBytes     = 1 << 20
	DefaultTolerance        = 5 * time.Minute
	DefaultIngressPath      = "/"
	DefaultGatewayPath      = "/"
	DefaultWorkerReplicas   = 1
	DefaultConcurrency      = 10
	DefaultSinkTimeout      = 10 * time.Second
	DefaultAutoscalingMin   = 2
	DefaultAutoscalingCPU   = 70
	DefaultWorkerMinScale   = 1
	DefaultPendingPerWorker = 100
	DefaultAPIKeyKey        = "api-key"
	DefaultReplicaTimeout   = time.Second
	DefaultBreakerThreshold = 5
	DefaultProbeInterval    = 2 * time.Second
	DefaultMaxProbeInterval = time.Minute
	DefaultMaxHold          = 24 * time.Hour
)

// EffectiveMinReplicas is the effective lower bound of an autoscaling spec: minReplicas, or
// DefaultAutoscalingMin capped at maxReplicas.
func (a *AutoscalingSpec) EffectiveMinReplicas() int32 {
	if a.MinReplicas != nil {
		return *a.MinReplicas
	}
	return min(DefaultAutoscalingMin, a.MaxReplicas)
}

// QueueName is the effective Asynq queue name: spec.queue.name or "<namespace>.<name>".
func (rw *ResendWebhook) QueueName() string {
	if rw.Spec.Queue.Name != "" {
		return rw.Spec.Queue.Name
	}
	return rw.Namespace + "." + rw.Name
}

// SigningSecretKeys is the effective list of signing secret keys.
func (rw *ResendWebhook) SigningSecretKeys() []string {
	if len(rw.Spec.SigningSecret.Keys) == 0 {
		return []string{DefaultSigningSecretKey}
	}
	return rw.Spec.SigningSecret.Keys
}

// Default fills every unset field that has a default, exactly as the CRD's markers would.
func (rw *ResendWebhook) Default() {
	s := &rw.Spec
	if len(s.SigningSecret.Keys) == 0 {
		s.SigningSecret.Keys = []string{DefaultSigningSecretKey}
	}
	setDuration(&s.Queue.DedupWindow, DefaultDedupWindow)
	setInt32(&s.Queue.Shards, 1)
	setInt32(&s.Retry.MaxAttempts, DefaultMaxAttempts)
	setInt32(&s.Retry.Factor, DefaultBackoffFactor)
	setDuration(&s.Retry.MinBackoff, DefaultMinBackoff)
	setDuration(&s.Retry.MaxBackoff, DefaultMaxBackoff)
	if s.Retry.Randomize == nil {
		s.Retry.Randomize = new(DefaultRandomize)
	}
	setDuration(&s.MaxDuration, DefaultMaxDuration)
	setInt32(&s.Receiver.Replicas, DefaultReceiverReplicas)
	if s.Receiver.MaxBodyBytes == nil {
		s.Receiver.MaxBodyBytes = new(int64(DefaultMaxBodyBytes))
	}
	setDuration(&s.Receiver.Tolerance, DefaultTolerance)
	if a := s.Receiver.Autoscaling; a != nil {
		setInt32(&a.TargetCPUUtilizationPercentage, DefaultAutoscalingCPU)
	}
	if in := s.Ingress; in != nil && in.Path == "" {
		in.Path = DefaultIngressPath
	}
	if g := s.Gateway; g != nil && g.Path == "" {
		g.Path = DefaultGatewayPath
	}
	if w := s.Worker; w != nil {
		setInt32(&w.Replicas, DefaultWorkerReplicas)
		setInt32(&w.Concurrency, DefaultConcurrency)
		if a := w.Autoscaling; a != nil {
			setInt32(&a.MinReplicas, DefaultWorkerMinScale)
			setInt32(&a.PendingPerReplica, DefaultPendingPerWorker)
		}
		if w.Sink != nil {
			setDuration(&w.Sink.Timeout, DefaultSinkTimeout)
		}
		b := &w.CircuitBreaker
		if b.Enabled == nil {
			b.Enabled = new(true)
		}
		setInt32(&b.FailureThreshold, DefaultBreakerThreshold)
		setDuration(&b.ProbeInterval, DefaultProbeInterval)
		setDuration(&b.MaxProbeInterval, DefaultMaxProbeInterval)
		setDuration(&b.MaxHold, DefaultMaxHold)
	}
	if r := s.Resend; r != nil {
		if r.APIKeySecretRef.Key == "" {
			r.APIKeySecretRef.Key = DefaultAPIKeyKey
		}
		if r.DeletionPolicy == "" {
			r.DeletionPolicy = DeletionPolicyDelete
		}
		if r.AutoEnable == nil {
			r.AutoEnable = new(true)
		}
	}
}

func setInt32(p **int32, v int32) {
	if *p == nil {
		*p = new(v)
	}
}

func setDuration(p **metav1.Duration, d time.Duration) {
	if *p == nil {
		*p = &metav1.Duration{Duration: d}
	}
}
