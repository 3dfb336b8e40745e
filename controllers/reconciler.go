package controllers

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	client    client.Client // cached reads (owned kinds label-filtered, Secrets metadata only), writes
	apiReader client.Reader // uncached reads: ownership checks, Secret values, managed fields
	recorder  recorder.EventRecorder
	opts      Options
	queues    *queueMonitors
	applied   *appliedMemo
	secrets   *secretStore
	figures   *figureWrites
	resend    *resendIntegration
	optional  optionalAPIs
}

// conflictRetry is how soon a reconcile whose status update conflicted runs again (the newer
// object usually arrives through the watch first).
const conflictRetry = 200 * time.Millisecond

// Reconcile: get → record a shard change → render → check policy and ownership → apply →
// observe → status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rw, err := r.get(ctx, req.NamespacedName)
	if err != nil || rw == nil {
		return ctrl.Result{}, err
	}
	if !rw.DeletionTimestamp.IsZero() {
		return r.finalizeResend(ctx, rw)
	}
	if err := r.recordShardChange(ctx, rw); errors.Is(err, errRetry) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	secrets := r.secrets.reader(rw)
	defer secrets.done()
	served := r.optional.served(ctx)
	children := render.All(rw, render.Options{Image: r.opts.Image, RedisSecretsDigest: secrets.redisDigest(ctx, rw),
		GatewayAPI: served.gatewayAPI, KEDA: served.keda})
	outcome := r.checkPolicy(rw)
	var p plan
	if outcome.mayApply() {
		p, outcome = r.checkOwnership(ctx, rw, children)
	}
	if outcome.mayApply() {
		outcome = outcome.after(r.apply(ctx, rw, p))
	}
	obs, err := r.observe(ctx, rw, secrets, served)
	if err != nil {
		return ctrl.Result{}, err
	}
	obs.applied = outcome
	obs.registration = r.syncResend(ctx, rw, obs)
	if err := r.writeStatus(ctx, rw, obs); errors.Is(err, errRetry) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if outcome.err != nil {
		return ctrl.Result{}, outcome.err // retried with backoff
	}
	// Queue figures, Redis, Resend's state and foreign objects in the way change without an
	// event we watch: look again later.
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

// forget drops what the reconciler remembers about a webhook: applied children, Secret values,
// its Redis connection, its figure writes and its metrics.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.applied.forget(key)
	r.secrets.forget(key)
	r.queues.release(key)
	r.figures.forget(key)
	r.resend.forget(key)
	deleteMetrics(key)
}

// Close releases every Redis connection.
func (r *Reconciler) Close() { r.queues.closeAll() }
