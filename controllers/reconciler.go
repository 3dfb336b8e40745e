package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// Reconciler turns each ResendWebhook into its running objects and reports what it observed.
type Reconciler struct {
	client   client.Client
	recorder recorder.EventRecorder
	opts     Options
	queues   *queueMonitors
	applied  *appliedMemo
	reader   client.Reader // uncached reads (API key, the signing Secret the operator writes)
	resend   *resendIntegration
}

// conflictRetry is how soon a reconcile whose status update conflicted runs again (the newer
// object usually arrives through the watch first).
const conflictRetry = 200 * time.Millisecond

// Reconcile: get → render → apply → observe → status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rw, err := r.get(ctx, req.NamespacedName)
	if err != nil || rw == nil {
		return ctrl.Result{}, err
	}
	if !rw.DeletionTimestamp.IsZero() {
		return r.finalizeResend(ctx, rw)
	}
	secrets := newSecretReader(r.client, rw.Namespace)
	inputs := render.Options{Image: r.opts.Image, RedisSecretsDigest: secrets.redisDigest(ctx, rw)}
	applyErr := r.apply(ctx, rw, inputs, render.All(rw, inputs))
	obs := r.observe(ctx, rw, secrets)
	obs.applyErr = applyErr
	obs.registration = r.syncResend(ctx, rw, obs)
	if err := r.writeStatus(ctx, rw, obs); errors.Is(err, errRetry) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if applyErr != nil {
		return ctrl.Result{}, applyErr // retried with backoff
	}
	// Queue figures and Redis reachability change without any Kubernetes event: look again later.
	return ctrl.Result{RequeueAfter: requeueAfter(r.opts.StatusRefresh, obs.registration)}, nil
}

// get returns the webhook, or nil when it is gone or going (its children are garbage-collected
// through their owner references; the Redis queue is deliberately left alone). A webhook going
// while it holds the Resend finalizer is returned, for finalizeResend.
func (r *Reconciler) get(ctx context.Context, key types.NamespacedName) (*v1alpha1.ResendWebhook, error) {
	var rw v1alpha1.ResendWebhook
	if err := r.client.Get(ctx, key, &rw); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
			return nil, nil
		}
		return nil, err
	}
	if !rw.DeletionTimestamp.IsZero() {
		r.forget(key)
		if !controllerutil.ContainsFinalizer(&rw, ResendFinalizer) {
			return nil, nil
		}
	}
	return &rw, nil
}

// forget drops what the reconciler remembers about a webhook and its Redis connection.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.applied.forget(key)
	r.queues.release(key)
	r.resend.forget(key)
}

// Close releases every Redis connection.
func (r *Reconciler) Close() { r.queues.closeAll() }

// apply server-side applies the present children and deletes absent ones this webhook controls.
// A child that has not changed since this process last applied it is not sent again.
func (r *Reconciler) apply(ctx context.Context, rw *v1alpha1.ResendWebhook, inputs render.Options, children render.Children) error {
	key := client.ObjectKeyFromObject(rw)
	last := r.applied.versionsFor(rw, inputs)
	versions := make(map[string]string, len(children.Present))
	for _, obj := range children.Present {
		k := childKey(obj)
		if rv := last[k]; unchanged(ctx, r.client, obj, rv) {
			versions[k] = rv
			continue
		}
		err := r.handOverReplicas(ctx, rw, obj)
		var rv string
		if err == nil {
			rv, err = r.applyOne(ctx, obj)
		}
		if err != nil {
			r.applied.forget(key)
			return fmt.Errorf("apply %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
		versions[k] = rv
	}
	for _, obj := range children.Absent {
		if err := r.deleteIfControlled(ctx, rw, obj); err != nil {
			r.applied.forget(key)
			return fmt.Errorf("delete %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	r.applied.remember(rw, inputs, versions)
	return nil
}

// applyOne applies one object with the operator's field manager, taking over fields others
// changed, and returns the resulting resourceVersion. An unchanged object is a no-op at the
// API server (no new resourceVersion).
func (r *Reconciler) applyOne(ctx context.Context, obj client.Object) (string, error) {
	u, err := render.ApplyObject(obj)
	if err != nil {
		return "", err
	}
	if err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return "", err
	}
	return u.GetResourceVersion(), nil
}

// deleteIfControlled deletes an optional child the spec no longer asks for, but only when this
// webhook controls it: a same-named object someone else made is left alone.
func (r *Reconciler) deleteIfControlled(ctx context.Context, rw *v1alpha1.ResendWebhook, empty client.Object) error {
	obj := empty.DeepCopyObject().(client.Object)
	if err := r.client.Get(ctx, client.ObjectKeyFromObject(empty), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, rw) {
		return nil
	}
	err := r.client.Delete(ctx, obj, client.Preconditions{UID: new(obj.GetUID())}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func childKey(obj client.Object) string {
	return obj.GetObjectKind().GroupVersionKind().Kind + "/" + obj.GetName()
}
