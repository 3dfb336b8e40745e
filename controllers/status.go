package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// observation is what one reconcile saw of the world.
type observation struct {
	secrets  metav1.Condition
	receiver *appsv1.Deployment // nil: not in the cluster
	worker   *appsv1.Deployment
	ingress  *networkingv1.Ingress
	queue    metav1.Condition
	figures  *v1alpha1.QueueStatus // nil: unknown this time (keep the last figures)
	applyErr error
	// registration is the Resend step's outcome; nil without spec.resend.
	registration *registration
}

// observe reads Secrets, children and Redis.
func (r *Reconciler) observe(ctx context.Context, rw *v1alpha1.ResendWebhook, secrets *secretReader) observation {
	obs := observation{secrets: secrets.checkSecrets(ctx, rw)}
	obs.receiver = getIfExists[appsv1.Deployment](ctx, r.client, rw.Namespace, render.ReceiverName(rw))
	if rw.Spec.Worker != nil {
		obs.worker = getIfExists[appsv1.Deployment](ctx, r.client, rw.Namespace, render.WorkerName(rw))
	}
	if rw.Spec.Ingress != nil {
		obs.ingress = getIfExists[networkingv1.Ingress](ctx, r.client, rw.Namespace, render.IngressName(rw))
	}
	obs.queue, obs.figures = r.observeQueue(ctx, rw, secrets)
	return obs
}

func getIfExists[T any, P interface {
	*T
	client.Object
}](ctx context.Context, c client.Reader, namespace, name string) P {
	obj := P(new(T))
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj); err != nil {
		return nil
	}
	return obj
}

// observeQueue PINGs Redis with the configured credentials and reads the queue's figures.
func (r *Reconciler) observeQueue(ctx context.Context, rw *v1alpha1.ResendWebhook, secrets *secretReader) (metav1.Condition, *v1alpha1.QueueStatus) {
	key := client.ObjectKeyFromObject(rw)
	cfg, bad := secrets.redisConfig(ctx, rw)
	if bad != nil {
		r.queues.release(key)
		return *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonCredentials, bad.Message), nil
	}
	mon, err := r.queues.get(key, cfg)
	if err != nil {
		return *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonInvalidRedisConfig, err.Error()), nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.RedisTimeout)
	defer cancel()
	figures, err := mon.figures(ctx, rw.QueueName())
	if err != nil {
		return *falseCond(v1alpha1.ConditionQueueReachable, v1alpha1.ReasonUnreachable, "redis: "+err.Error()), nil
	}
	return metav1.Condition{Type: v1alpha1.ConditionQueueReachable, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReachable,
		Message: fmt.Sprintf("queue %q reachable", rw.QueueName())}, &figures
}

// desiredStatus is the status the observation implies. It keeps lastTransitionTime of
// conditions whose status did not change, so an unchanged world gives an identical status.
func desiredStatus(rw *v1alpha1.ResendWebhook, obs observation) v1alpha1.ResendWebhookStatus {
	st := *rw.Status.DeepCopy()
	st.ObservedGeneration = rw.Generation

	applicable := []metav1.Condition{obs.secrets, deploymentCondition(v1alpha1.ConditionReceiverAvailable, obs.receiver)}
	if rw.Spec.Worker != nil {
		applicable = append(applicable, deploymentCondition(v1alpha1.ConditionWorkerAvailable, obs.worker))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionWorkerAvailable)
	}
	if rw.Spec.Ingress != nil {
		applicable = append(applicable, ingressCondition(obs.ingress))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionIngressReady)
	}
	applicable = append(applicable, obs.queue)
	if reg := obs.registration; reg != nil {
		applicable = append(applicable, reg.cond)
		st.Resend = reg.status
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionRegistered)
		st.Resend = nil
	}
	applicable = append(applicable, readyCondition(applicable, obs.applyErr))
	for _, c := range applicable {
		c.ObservedGeneration = rw.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}

	st.URL = endpointURL(rw, obs.ingress)
	st.Receiver.ReadyReplicas = readyReplicas(obs.receiver)
	st.Worker.ReadyReplicas = readyReplicas(obs.worker)
	if obs.figures != nil {
		st.Queue = *obs.figures
	}
	st.Queue.Name = rw.QueueName()
	return st
}

func readyReplicas(d *appsv1.Deployment) int32 {
	if d == nil {
		return 0
	}
	return d.Status.ReadyReplicas
}

// deploymentCondition follows the Deployment's own Available condition, once the deployment
// controller has seen the current spec (until then the status describes the old pods).
func deploymentCondition(typ string, d *appsv1.Deployment) metav1.Condition {
	if d == nil {
		return *falseCond(typ, v1alpha1.ReasonDeploymentMissing, "the Deployment does not exist yet")
	}
	if d.Status.ObservedGeneration < d.Generation {
		return *falseCond(typ, v1alpha1.ReasonProgressing, fmt.Sprintf("Deployment %s: generation %d not yet observed by the deployment controller", d.Name, d.Generation))
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAvailable,
				Message: fmt.Sprintf("Deployment %s is available", d.Name)}
		}
	}
	return *falseCond(typ, v1alpha1.ReasonUnavailable, fmt.Sprintf("Deployment %s has not reached minimum availability", d.Name))
}

func ingressCondition(ing *networkingv1.Ingress) metav1.Condition {
	if ing == nil {
		return *falseCond(v1alpha1.ConditionIngressReady, v1alpha1.ReasonIngressMissing, "the Ingress does not exist yet")
	}
	if lbAddress(ing) == "" {
		return *falseCond(v1alpha1.ConditionIngressReady, v1alpha1.ReasonNoAddress, "the ingress controller has not assigned an address yet")
	}
	return metav1.Condition{Type: v1alpha1.ConditionIngressReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAddressAssigned,
		Message: "load balancer address " + lbAddress(ing)}
}

// lbAddress is the Ingress's first load-balancer address, with its port when the ingress
// controller reports one other than 80 and 443 (as local or NodePort-style controllers do).
func lbAddress(ing *networkingv1.Ingress) string {
	for _, lb := range ing.Status.LoadBalancer.Ingress {
		addr := cmp.Or(lb.Hostname, lb.IP)
		if addr == "" {
			continue
		}
		for _, p := range lb.Ports {
			if p.Port != 80 && p.Port != 443 {
				return net.JoinHostPort(addr, strconv.Itoa(int(p.Port)))
			}
		}
		return addr
	}
	return ""
}

// endpointURL is where Resend must post: the Ingress host (or its load-balancer address when
// no host is set) and path; https when the Ingress terminates TLS.
func endpointURL(rw *v1alpha1.ResendWebhook, ing *networkingv1.Ingress) string {
	in := rw.Spec.Ingress
	if in == nil {
		return ""
	}
	host := in.Host
	if host == "" && ing != nil {
		host = lbAddress(ing)
	}
	if host == "" {
		return ""
	}
	scheme := "http"
	if in.TLS != nil {
		scheme = "https"
	}
	path := in.Path
	if path == "" {
		path = v1alpha1.DefaultIngressPath
	}
	return scheme + "://" + host + path
}

// readyCondition is True when every applicable condition is and the last apply succeeded.
func readyCondition(conds []metav1.Condition, applyErr error) metav1.Condition {
	if applyErr != nil {
		return *falseCond(v1alpha1.ConditionReady, v1alpha1.ReasonApplyFailed, applyErr.Error())
	}
	var notTrue []string
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			notTrue = append(notTrue, c.Type+": "+c.Message)
		}
	}
	if len(notTrue) > 0 {
		return *falseCond(v1alpha1.ConditionReady, v1alpha1.ReasonNotReady, strings.Join(notTrue, "; "))
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady, Message: "all components are ready"}
}

// writeStatus patches the status only when it differs, then emits a Warning Event for each
// transition into a failure.
func (r *Reconciler) writeStatus(ctx context.Context, rw *v1alpha1.ResendWebhook, obs observation) error {
	st := desiredStatus(rw, obs)
	if equality.Semantic.DeepEqual(rw.Status, st) {
		return nil
	}
	// An update of the whole status (not a merge patch: cleared optional fields must go).
	// A conflict means a newer object is on its way through the watch; that reconcile retries.
	updated := rw.DeepCopy()
	updated.Status = st
	if err := r.client.Status().Update(ctx, updated); err != nil {
		if apierrors.IsConflict(err) {
			return errRetry
		}
		return client.IgnoreNotFound(err)
	}
	r.emitFailures(ctx, updated, rw.Status.Conditions, st.Conditions)
	return nil
}

// errRetry asks for a prompt retry without logging an error.
var errRetry = errors.New("status conflict: retry")

// failureConditions are the conditions whose turning False is worth a Warning Event.
var failureConditions = []string{v1alpha1.ConditionSecretResolved, v1alpha1.ConditionQueueReachable}

func (r *Reconciler) emitFailures(ctx context.Context, rw *v1alpha1.ResendWebhook, before, after []metav1.Condition) {
	for _, typ := range failureConditions {
		// QueueReachable=False for missing credentials repeats SecretResolved's failure,
		// which already has its own Event.
		if c := newFailure(before, after, typ); c != nil && c.Reason != v1alpha1.ReasonCredentials {
			r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, c.Reason, "Reconcile", "%s", c.Message)
		}
	}
	if c := newFailure(before, after, v1alpha1.ConditionReady); c != nil && c.Reason == v1alpha1.ReasonApplyFailed {
		r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, v1alpha1.ReasonApplyFailed, "Apply", "%s", c.Message)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("status updated")
}

// newFailure returns the condition typ when it became False (or failed for a new reason).
func newFailure(before, after []metav1.Condition, typ string) *metav1.Condition {
	now := meta.FindStatusCondition(after, typ)
	if now == nil || now.Status != metav1.ConditionFalse {
		return nil
	}
	prev := meta.FindStatusCondition(before, typ)
	if prev != nil && prev.Status == metav1.ConditionFalse && prev.Reason == now.Reason {
		return nil
	}
	return now
}
