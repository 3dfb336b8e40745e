package controllers

import (
	"cmp"
	"context"
	"errors"
	"net"
	"slices"
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
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// observation is what one reconcile saw of the world.
type observation struct {
	applied  applyOutcome
	secrets  metav1.Condition
	receiver *appsv1.Deployment // nil: no such Deployment controlled by the webhook
	worker   *appsv1.Deployment
	ingress  *networkingv1.Ingress
	route    routeObservation
	scaler   scalerObservation
	queue    queueObservation
	// registration is the Resend step's outcome; nil without spec.resend.
	registration *registration
}

// observe reads Secrets, children and Redis.
func (r *Reconciler) observe(ctx context.Context, rw *v1alpha1.ResendWebhook, secrets *secretReader, served servedAPIs) (observation, error) {
	obs := observation{secrets: secrets.checkSecrets(ctx, rw)}
	var errs [5]error
	obs.receiver, errs[0] = getControlled[appsv1.Deployment](ctx, r.client, rw, render.ReceiverName(rw))
	if rw.Spec.Worker != nil {
		obs.worker, errs[1] = getControlled[appsv1.Deployment](ctx, r.client, rw, render.WorkerName(rw))
	}
	if rw.Spec.Ingress != nil {
		obs.ingress, errs[2] = getControlled[networkingv1.Ingress](ctx, r.client, rw, render.IngressName(rw))
	}
	obs.route, errs[3] = r.observeRoute(ctx, rw, served.gatewayAPI)
	obs.scaler, errs[4] = r.observeScaler(ctx, rw, served.keda)
	if err := errors.Join(errs[:]...); err != nil {
		return obs, err
	}
	obs.queue = r.observeQueue(ctx, rw, secrets)
	return obs, nil
}

// getControlled returns the named object when it exists and rw controls it; nil otherwise.
// Only NotFound counts as absent: any other error is returned.
func getControlled[T any, P interface {
	*T
	client.Object
}](ctx context.Context, c client.Reader, rw *v1alpha1.ResendWebhook, name string) (P, error) {
	obj := P(new(T))
	if err := c.Get(ctx, types.NamespacedName{Namespace: rw.Namespace, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if !metav1.IsControlledBy(obj, rw) {
		return nil, nil
	}
	return obj, nil
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
	if rw.Spec.Gateway != nil {
		applicable = append(applicable, routeCondition(rw, obs.route))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionRouteReady)
	}
	if workerAutoscaled(rw) {
		applicable = append(applicable, scalerCondition(rw, obs.scaler))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionWorkerAutoscalerReady)
	}
	applicable = append(applicable, obs.queue.reachable)
	if reg := obs.registration; reg != nil {
		applicable = append(applicable, reg.cond)
		st.Resend = reg.status
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionRegistered)
		st.Resend = nil
	}
	// SinkAvailable counts for Ready only when False: Unknown (no worker reported yet) must
	// not keep a new webhook from becoming Ready.
	sink := obs.queue.sink
	if rw.Spec.Worker == nil {
		sink = metav1.Condition{}
	}
	if sink.Type == "" {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionSinkAvailable)
	} else if sink.Status == metav1.ConditionFalse {
		applicable = append(applicable, sink)
	}
	ready := readyCondition(append(applicable, obs.applied.condition()))
	stored := append(applicable, ready)
	if sink.Type != "" && sink.Status != metav1.ConditionFalse {
		stored = append(stored, sink)
	}
	if obs.queue.durable.Type != "" { // QueueDurable is advice: stored, never part of Ready
		stored = append(stored, obs.queue.durable)
	}
	for _, c := range stored {
		c.ObservedGeneration = rw.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}

	st.URL = obs.url(rw)
	st.Receiver.ReadyReplicas = readyReplicas(obs.receiver)
	st.Worker.ReadyReplicas = readyReplicas(obs.worker)
	if obs.queue.figures != nil {
		st.Queue = *obs.queue.figures
	}
	st.Queue.Name = rw.QueueName()
	st.Queue.Shards = int32(rw.Spec.Queue.EffectiveShards())
	st.Queue.PreviousShards = stillDraining(rw, obs)
	return st
}

// stillDraining is status.queue.previousShards without the counts whose queues drained. A
// count is dropped only once every receiver runs the current layout: a receiver of the old
// one could still enqueue to those queues, which no worker would then consume.
func stillDraining(rw *v1alpha1.ResendWebhook, obs observation) []int32 {
	prev := rw.Status.Queue.PreviousShards
	if len(obs.queue.drained) == 0 || !rolledOut(obs.receiver) {
		return prev
	}
	left := slices.DeleteFunc(slices.Clone(prev), func(p int32) bool { return slices.Contains(obs.queue.drained, int(p)) })
	if len(left) == 0 {
		return nil
	}
	return left
}

// rolledOut reports whether every pod of d runs its current template.
func rolledOut(d *appsv1.Deployment) bool {
	if d == nil || d.Status.ObservedGeneration < d.Generation {
		return false
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.UpdatedReplicas >= want && d.Status.Replicas == d.Status.UpdatedReplicas
}

func readyReplicas(d *appsv1.Deployment) int32 {
	if d == nil {
		return 0
	}
	return d.Status.ReadyReplicas
}

func ingressCondition(ing *networkingv1.Ingress) metav1.Condition {
	if ing == nil {
		return *falseCond(v1alpha1.ConditionIngressReady, v1alpha1.ReasonIngressMissing, "no Ingress controlled by this ResendWebhook exists yet")
	}
	if lbAddress(ing) == "" {
		return *falseCond(v1alpha1.ConditionIngressReady, v1alpha1.ReasonNoAddress, "the ingress controller has not assigned an address yet")
	}
	return metav1.Condition{Type: v1alpha1.ConditionIngressReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAddressAssigned,
		Message: "load balancer address " + lbAddress(ing)}
}

// lbAddress is the Ingress's first load-balancer address as a URL host: IPv6 addresses in
// brackets, with the port when the ingress controller reports one other than 80 and 443 (as
// local or NodePort-style controllers do).
func lbAddress(ing *networkingv1.Ingress) string {
	for _, lb := range ing.Status.LoadBalancer.Ingress {
		addr := bounded.Text(cmp.Or(lb.Hostname, lb.IP), 253)
		if addr == "" {
			continue
		}
		for _, p := range lb.Ports {
			if p.Port != 80 && p.Port != 443 {
				return net.JoinHostPort(addr, strconv.Itoa(int(p.Port)))
			}
		}
		if strings.Contains(addr, ":") {
			return "[" + addr + "]"
		}
		return addr
	}
	return ""
}

// url is where Resend must post: through the HTTPRoute with spec.gateway, else the Ingress.
func (obs observation) url(rw *v1alpha1.ResendWebhook) string {
	if rw.Spec.Gateway != nil {
		return routeURL(rw, obs.route)
	}
	return endpointURL(rw, obs.ingress)
}

// endpointURL is where Resend must post: the Ingress host (or its load-balancer address when
// no host is set) and path; https when the Ingress terminates TLS. A wildcard host names no
// single URL (the CRD rejects it; objects stored before that rule get no URL).
func endpointURL(rw *v1alpha1.ResendWebhook, ing *networkingv1.Ingress) string {
	in := rw.Spec.Ingress
	if in == nil || strings.HasPrefix(in.Host, "*") {
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

// writeStatus updates the status when it differs. A change of anything but the queue figures
// is written at once; new figures alone wait for their turn (figureWrites). Then a Warning
// Event is emitted for each transition into a failure.
func (r *Reconciler) writeStatus(ctx context.Context, rw *v1alpha1.ResendWebhook, obs observation) error {
	key := client.ObjectKeyFromObject(rw)
	st := desiredStatus(rw, obs)
	setConditionMetrics(key, rw.Status.Conditions, st.Conditions)
	withoutFigures := *st.DeepCopy()
	withoutFigures.Queue = rw.Status.Queue
	withoutFigures.Queue.Name, withoutFigures.Queue.Shards, withoutFigures.Queue.PreviousShards = st.Queue.Name, st.Queue.Shards, st.Queue.PreviousShards
	switch {
	case equality.Semantic.DeepEqual(rw.Status, st):
		return nil
	case equality.Semantic.DeepEqual(rw.Status, withoutFigures) && !r.figures.allow(key):
		return nil // only the figures changed, and it is not their turn
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
	r.figures.wrote(key)
	r.emitFailures(ctx, updated, rw.Status.Conditions, st.Conditions)
	return nil
}

// errRetry asks for a prompt retry without logging an error.
var errRetry = errors.New("status conflict: retry")

// failureConditions are the conditions whose turning False is worth a Warning Event.
var failureConditions = []string{v1alpha1.ConditionSecretResolved, v1alpha1.ConditionQueueReachable, v1alpha1.ConditionSinkAvailable}

// routingFailureEvents are the reasons of RouteReady and WorkerAutoscalerReady worth a Warning
// Event: each needs someone to act (the others, such as Pending, pass by themselves).
var routingFailureEvents = map[string][]string{
	v1alpha1.ConditionRouteReady:            {v1alpha1.ReasonGatewayAPIAbsent, v1alpha1.ReasonRouteNotAccepted, v1alpha1.ReasonRefsNotResolved},
	v1alpha1.ConditionWorkerAutoscalerReady: {v1alpha1.ReasonKEDAAbsent, v1alpha1.ReasonScalerNotReady},
}

// readyFailureEvents are the reasons of Ready whose arrival is worth a Warning Event: each needs
// someone to act, and no other condition's Event already says it.
var readyFailureEvents = []string{v1alpha1.ReasonApplyFailed, v1alpha1.ReasonNameConflict, v1alpha1.ReasonPolicyViolation, v1alpha1.ReasonRolloutFailed}

func (r *Reconciler) emitFailures(ctx context.Context, rw *v1alpha1.ResendWebhook, before, after []metav1.Condition) {
	for _, typ := range failureConditions {
		// QueueReachable=False for missing credentials repeats SecretResolved's failure,
		// which already has its own Event.
		if c := newFailure(before, after, typ); c != nil && c.Reason != v1alpha1.ReasonCredentials {
			r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, c.Reason, "Reconcile", "%s", c.Message)
		}
	}
	for typ, reasons := range routingFailureEvents {
		if c := newFailure(before, after, typ); c != nil && slices.Contains(reasons, c.Reason) {
			r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, c.Reason, "Reconcile", "%s", c.Message)
		}
	}
	if c := newFailure(before, after, v1alpha1.ConditionReady); c != nil && slices.Contains(readyFailureEvents, c.Reason) {
		r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, c.Reason, "Reconcile", "%s", c.Message)
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
