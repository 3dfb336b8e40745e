package podrunner

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

func (r *Runner) setupControllers(mgr manager.Manager) error {
	// Several runners may live in one test process; controller names need not be unique then.
	opts := controller.Options{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 4}
	err := ctrl.NewControllerManagedBy(mgr).Named("podrunner-deployments").WithOptions(opts).
		For(&appsv1.Deployment{}).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		Complete(reconcile.Func(r.reconcileDeployment))
	if err != nil {
		return err
	}
	err = ctrl.NewControllerManagedBy(mgr).Named("podrunner-ingresses").WithOptions(opts).
		For(&networkingv1.Ingress{}).
		Complete(reconcile.Func(r.reconcileIngress))
	if err != nil {
		return err
	}
	// Services and Secrets are read from the cache by the proxy and the volume syncer; make
	// sure their informers run from the start.
	for _, obj := range []client.Object{&corev1.Service{}, &corev1.Secret{}, &corev1.ConfigMap{}} {
		if _, err := mgr.GetCache().GetInformer(context.Background(), obj); err != nil {
			return err
		}
	}
	return r.setupGC(mgr)
}

// reconcileDeployment makes the local pods of a Deployment match its spec and reports status.
func (r *Runner) reconcileDeployment(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var d appsv1.Deployment
	err := r.client.Get(ctx, req.NamespacedName, &d)
	if apierrors.IsNotFound(err) || (err == nil && d.DeletionTimestamp != nil) {
		r.forget(req.NamespacedName, "deployment deleted")
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	hash := templateHash(&d.Spec.Template)
	desired := int(ptr.Deref(d.Spec.Replicas, 1))
	notRunnable := r.runnable(&d.Spec.Template.Spec)

	r.mu.Lock()
	ds := r.deployments[req.NamespacedName]
	if ds == nil {
		ds = &deployState{}
		r.deployments[req.NamespacedName] = ds
	}
	if notRunnable != nil && ds.reportedReason != notRunnable.Error() {
		r.log.Warn("deployment cannot run locally", "deployment", req.String(), "reason", notRunnable.Error())
	}
	ds.reportedReason = ""
	if notRunnable != nil {
		ds.reportedReason = notRunnable.Error()
	}
	var current, old []*pod
	for _, p := range ds.pods {
		if p.Hash == hash {
			current = append(current, p)
		} else {
			old = append(old, p)
		}
	}
	var start, stop []*pod
	if notRunnable == nil {
		for len(current) < desired {
			p, err := r.newPod(&d, hash)
			if err != nil {
				r.mu.Unlock()
				return reconcile.Result{}, err
			}
			current = append(current, p)
			start = append(start, p)
		}
	}
	// Scale down: drop pods that are not ready first, newest first.
	current, extra := keepBest(current, desired)
	stop = append(stop, extra...)
	// Roll: keep old pods until enough new ones are ready (maxUnavailable of the strategy).
	readyNew := countReady(current)
	keepOld := max(0, desired-maxUnavailable(&d, desired)-readyNew)
	old, extra = keepBest(old, keepOld)
	stop = append(stop, extra...)
	ds.pods = append(current, old...)
	pods := slices.Clone(ds.pods)
	r.mu.Unlock()

	for _, p := range start {
		p.log.Info("starting pod", "deployment", req.String())
		p.start(r.podCtx)
	}
	for _, p := range stop {
		r.stopPod(p, "scaled down or replaced by a new template")
	}
	return reconcile.Result{}, r.writeDeploymentStatus(ctx, &d, pods, hash, desired, notRunnable)
}

// forget stops every pod of a deleted Deployment.
func (r *Runner) forget(key types.NamespacedName, why string) {
	r.mu.Lock()
	ds := r.deployments[key]
	delete(r.deployments, key)
	r.mu.Unlock()
	if ds == nil {
		return
	}
	for _, p := range ds.pods {
		r.stopPod(p, why)
	}
}

// keepBest keeps n pods, preferring ready ones and then older ones, and returns the rest.
func keepBest(pods []*pod, n int) (keep, drop []*pod) {
	if len(pods) <= n {
		return pods, nil
	}
	sorted := slices.Clone(pods)
	slices.SortStableFunc(sorted, func(a, b *pod) int {
		ar, br := a.Ready(), b.Ready()
		if ar != br {
			if ar {
				return -1
			}
			return 1
		}
		return a.created.Compare(b.created)
	})
	return sorted[:n], sorted[n:]
}

func countReady(pods []*pod) int {
	n := 0
	for _, p := range pods {
		if p.Ready() {
			n++
		}
	}
	return n
}

// maxUnavailable resolves the rolling update's maxUnavailable (default 25%, rounded down);
// Recreate is treated like maxUnavailable = all.
func maxUnavailable(d *appsv1.Deployment, desired int) int {
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return desired
	}
	v := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		v = *ru.MaxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, desired, false)
	if err != nil {
		return 0
	}
	return min(n, desired)
}

// writeDeploymentStatus writes the status the deployment controller would, only when it changed.
func (r *Runner) writeDeploymentStatus(ctx context.Context, d *appsv1.Deployment, pods []*pod, hash string, desired int, notRunnable error) error {
	var total, updated, ready int32
	for _, p := range pods {
		total++
		if p.Hash == hash {
			updated++
		}
		if p.Ready() {
			ready++
		}
	}
	st := d.Status.DeepCopy()
	st.ObservedGeneration = d.Generation
	st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = total, updated, ready, ready
	st.UnavailableReplicas = max(0, int32(desired)-ready)
	if int(ready) >= desired-maxUnavailable(d, desired) {
		setDeploymentCondition(st, appsv1.DeploymentAvailable, corev1.ConditionTrue, "MinimumReplicasAvailable", "Deployment has minimum availability.")
	} else {
		setDeploymentCondition(st, appsv1.DeploymentAvailable, corev1.ConditionFalse, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
	}
	switch {
	case notRunnable != nil:
		setDeploymentCondition(st, appsv1.DeploymentProgressing, corev1.ConditionFalse, "ImageNotRunnable", notRunnable.Error())
	case int(updated) == desired && int(total) == desired && int(ready) == desired:
		setDeploymentCondition(st, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable", fmt.Sprintf("Pods with template hash %s are available (local pod runner).", hash))
	default:
		setDeploymentCondition(st, appsv1.DeploymentProgressing, corev1.ConditionTrue, "ReplicaSetUpdated", fmt.Sprintf("Pods with template hash %s are progressing (local pod runner).", hash))
	}
	if equality.Semantic.DeepEqual(st, &d.Status) {
		return nil
	}
	// A merge patch (no resourceVersion) cannot conflict with the operator's spec applies;
	// the status is recomputed from the runner's own state on every reconcile anyway.
	orig := d.DeepCopy()
	d.Status = *st
	return r.client.Status().Patch(ctx, d, client.MergeFrom(orig))
}

func setDeploymentCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string) {
	now := metav1.Now()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		if c.Status != status || c.Reason != reason || c.Message != msg {
			c.Status, c.Reason, c.Message, c.LastUpdateTime = status, reason, msg, now
		}
		return
	}
	st.Conditions = append(st.Conditions, appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now})
}
