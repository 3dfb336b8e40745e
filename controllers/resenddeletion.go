package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
)

// finalizeResend runs while a webhook holding the Resend finalizer is being deleted. With
// deletionPolicy Delete it removes the webhook at Resend (gone already = done); with Retain it
// leaves it and releases the signing Secret (no owner reference, so it survives). When Resend
// cannot be reached or rejects the key, the finalizer stays: Registered=False DeletionFailed
// says why and how to get out (switch to Retain), a Warning Event marks it, and it is retried
// with backoff.
func (r *Reconciler) finalizeResend(ctx context.Context, rw *v1alpha1.ResendWebhook) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(rw, ResendFinalizer) {
		return ctrl.Result{}, nil
	}
	key := client.ObjectKeyFromObject(rw)
	if rw.Spec.Resend != nil {
		spec := rw.DeepCopy()
		spec.Default()
		var err error
		if spec.Spec.Resend.DeletionPolicy == v1alpha1.DeletionPolicyRetain {
			err = r.releaseSigningSecret(ctx, spec)
		} else {
			err = r.removeAtResend(ctx, spec)
		}
		if err != nil {
			// Backoff by the time spent deleting: stateless, so it survives restarts.
			wait := min(maxResendBackoff, max(2*time.Second, time.Since(rw.DeletionTimestamp.Time)/2))
			cond, _ := resendCondition(rw, err, wait)
			cond.Reason = v1alpha1.ReasonDeletionFailed
			cond.Message = fmt.Sprintf("cannot finish deletion (retrying in %s): %s; to keep the webhook at Resend and finish now, set spec.resend.deletionPolicy to Retain", wait, cond.Message)
			r.warnOnTransition(rw, cond)
			r.writeRegistered(ctx, rw, cond)
			ctrl.LoggerFrom(ctx).Info("Resend finalizer waits", "error", err.Error(), "retryIn", wait.String())
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	r.resend.forget(key)
	return ctrl.Result{}, client.IgnoreNotFound(r.setResendFinalizer(ctx, rw, false))
}

// removeAtResend deletes the webhook at Resend: the one in status, else the one registered for
// the endpoint (a lost status write). With no webhook known, a missing or rejected key means
// there is nothing this key could have registered: done.
func (r *Reconciler) removeAtResend(ctx context.Context, rw *v1alpha1.ResendWebhook) error {
	id := ""
	if st := rw.Status.Resend; st != nil {
		id = st.WebhookID
	}
	want := wantedRegistration(rw, rw.Status.URL)
	apiKey, err := r.readAPIKey(ctx, rw, want.apiKey)
	if err != nil {
		if id == "" {
			ctrl.LoggerFrom(ctx).Info("no webhook known at Resend and no API key to look for one; nothing to remove", "reason", err.Error())
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, resendSyncTimeout)
	defer cancel()
	c := r.resend.api.Client(apiKey)
	if id == "" && want.endpoint != "" {
		all, err := c.List(ctx)
		if resendapi.IsUnauthorized(err) {
			ctrl.LoggerFrom(ctx).Info("no webhook known at Resend and the key is rejected; nothing to remove", "reason", err.Error())
			return nil
		}
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(all, func(w resendapi.Webhook) bool { return w.Endpoint == want.endpoint }); i >= 0 {
			id = all[i].ID
		}
	}
	if id == "" {
		return nil
	}
	if err := c.Remove(ctx, id); err != nil && !resendapi.IsNotFound(err) {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("removed the webhook at Resend", "webhookID", id)
	r.recorder.Eventf(rw, nil, corev1.EventTypeNormal, "Deregistered", "Delete", "removed webhook %s at Resend", id)
	return nil
}

// releaseSigningSecret drops this webhook's owner reference from the signing Secret, so the
// garbage collector keeps it for the webhook Retain leaves at Resend.
func (r *Reconciler) releaseSigningSecret(ctx context.Context, rw *v1alpha1.ResendWebhook) error {
	want := wantedRegistration(rw, rw.Status.URL)
	sec, err := r.readSigningSecret(ctx, rw, want)
	if err != nil {
		return signingSecretError(fmt.Sprintf("reading signing Secret %q: %v", want.secretName, err))
	}
	if sec.obj == nil || !metav1.IsControlledBy(sec.obj, rw) {
		return nil
	}
	_, err = r.writeSigningSecret(ctx, rw, want, sec, func(s *corev1.Secret) {
		s.OwnerReferences = slices.DeleteFunc(s.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == rw.UID })
	})
	if err == nil {
		r.recorder.Eventf(rw, nil, corev1.EventTypeNormal, "Retained", "Delete", "left the webhook at Resend and kept Secret %q (deletionPolicy Retain)", want.secretName)
	}
	return err
}

// writeRegistered records the Registered condition of a webhook being deleted (the normal
// status path does not run for it).
func (r *Reconciler) writeRegistered(ctx context.Context, rw *v1alpha1.ResendWebhook, cond metav1.Condition) {
	updated := rw.DeepCopy()
	cond.ObservedGeneration = rw.Generation
	meta.SetStatusCondition(&updated.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(updated.Status, rw.Status) {
		return
	}
	if err := r.client.Status().Update(ctx, updated); err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("recording the deletion failure", "error", err.Error())
	}
}
