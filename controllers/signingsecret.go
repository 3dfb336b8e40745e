package controllers

import (
	"context"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
)

// Annotations on the signing Secret. The Secret, written in the same update as the secret
// material, records rotations; the status only mirrors them. So a lost status write can never
// make the operator rotate twice, and a lost answer to a rotation is recovered from Resend.
const (
	// AnnRotationRequested is written before the rotate call: the request value being acted on.
	AnnRotationRequested = "webhooks.resend-operator.dev/rotation-requested"
	// AnnRotatedFor is the request value of the last completed rotation.
	AnnRotatedFor = "webhooks.resend-operator.dev/rotated-for"
	// AnnRotatedAt is when the last rotation completed (RFC 3339).
	AnnRotatedAt = "webhooks.resend-operator.dev/rotated-at"
	// AnnPreviousExpiresAt is when the previous secret is dropped (RFC 3339).
	AnnPreviousExpiresAt = "webhooks.resend-operator.dev/previous-expires-at"
)

// signingSecretComponent labels the signing Secret the operator writes.
const signingSecretComponent = "signing-secret"

// signingSecret is the signing Secret as read directly from the API server.
type signingSecret struct {
	obj *corev1.Secret // nil: it does not exist
	key string         // the key holding the current secret
}

func (s signingSecret) current() []byte {
	if s.obj == nil {
		return nil
	}
	return s.obj.Data[s.key]
}

func (s signingSecret) valid() bool { return validSigningSecret(s.current()) }

func (s signingSecret) annotation(name string) string {
	if s.obj == nil {
		return ""
	}
	return s.obj.Annotations[name]
}

func (s signingSecret) timeAnnotation(name string) *metav1.Time {
	t, err := time.Parse(time.RFC3339Nano, s.annotation(name))
	if err != nil {
		return nil
	}
	return &metav1.Time{Time: t}
}

// previousExpiry is when the previous secret is to be dropped; zero when there is none.
func (s signingSecret) previousExpiry() time.Time {
	if s.obj == nil || len(s.obj.Data[render.PreviousSigningKey(s.key)]) == 0 {
		return time.Time{}
	}
	if t := s.timeAnnotation(AnnPreviousExpiresAt); t != nil {
		return t.Time
	}
	return time.Time{}
}

// signingSecretError: the signing Secret could not be read or written, or Resend gave no usable
// secret for it.
type signingSecretError string

func (e signingSecretError) Error() string { return string(e) }

// readSigningSecret reads the Secret uncached: the operator writes it and must see its own
// writes and anybody else's.
func (r *Reconciler) readSigningSecret(ctx context.Context, rw *v1alpha1.ResendWebhook, want resendWant) (signingSecret, error) {
	sec := signingSecret{key: want.secretKey}
	var obj corev1.Secret
	err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: rw.Namespace, Name: want.secretName}, &obj)
	switch {
	case apierrors.IsNotFound(err):
		return sec, nil
	case err != nil:
		return sec, err
	}
	sec.obj = &obj
	return sec, nil
}

// writeSigningSecret creates the Secret (labelled, controlled by rw) or updates it with the
// resourceVersion it was read at, so a concurrent change is never overwritten unseen.
func (r *Reconciler) writeSigningSecret(ctx context.Context, rw *v1alpha1.ResendWebhook, want resendWant, sec signingSecret, change func(*corev1.Secret)) (signingSecret, error) {
	if sec.obj == nil {
		obj := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: want.secretName, Namespace: rw.Namespace,
				Labels:          render.Labels(rw, signingSecretComponent),
				OwnerReferences: []metav1.OwnerReference{render.OwnerReference(rw)},
			},
			Type: corev1.SecretTypeOpaque,
		}
		change(obj)
		if err := r.client.Create(ctx, obj); err != nil {
			return sec, signingSecretError(fmt.Sprintf("creating signing Secret %q: %v", want.secretName, err))
		}
		return signingSecret{obj: obj, key: sec.key}, nil
	}
	obj := sec.obj.DeepCopy()
	change(obj)
	if equality.Semantic.DeepEqual(obj, sec.obj) {
		return sec, nil
	}
	if err := r.client.Update(ctx, obj); err != nil {
		return sec, signingSecretError(fmt.Sprintf("updating signing Secret %q: %v", want.secretName, err))
	}
	return signingSecret{obj: obj, key: sec.key}, nil
}

func setData(s *corev1.Secret, key string, v []byte) {
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[key] = v
}

func setAnnotations(s *corev1.Secret, kv map[string]string) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	maps.Copy(s.Annotations, kv)
}

// storeSecret makes the Secret hold Resend's current secret. When it differs from the stored
// one (a rotation whose write was lost, or one made in Resend's dashboard) the stored one
// stays under the previous key for the dual-signing window. A webhook created just now has a
// fresh secret: it satisfies any rotation request made so far.
func (r *Reconciler) storeSecret(ctx context.Context, rw *v1alpha1.ResendWebhook, want resendWant, sec signingSecret, fromResend string, created bool) (signingSecret, error) {
	switch {
	case fromResend == "" && sec.valid():
		return sec, nil // Resend did not return it this time; what is stored is its last answer
	case fromResend == "":
		return sec, signingSecretError("Resend did not return the signing secret of the webhook; re-create it (delete it in Resend) or rotate it")
	case !validSigningSecret([]byte(fromResend)):
		return sec, signingSecretError("Resend returned a signing secret that is not whsec_ + base64")
	case string(sec.current()) == fromResend:
		return sec, nil
	}
	now := time.Now()
	old := sec.current()
	rotation := r.rotationState(rw, sec)
	return r.writeSigningSecret(ctx, rw, want, sec, func(s *corev1.Secret) {
		setData(s, sec.key, []byte(fromResend))
		switch {
		case created:
			delete(s.Data, render.PreviousSigningKey(sec.key))
			if rotation.pending() {
				setAnnotations(s, map[string]string{AnnRotatedFor: rotation.request, AnnRotationRequested: rotation.request})
			}
		case validSigningSecret(old):
			setData(s, render.PreviousSigningKey(sec.key), old)
			setAnnotations(s, map[string]string{AnnPreviousExpiresAt: now.Add(r.resend.opts.DualSigningWindow).UTC().Format(time.RFC3339Nano)})
			if rotation.requested != "" && rotation.requested != rotation.done {
				// The rotation this operator asked for happened; its write was lost.
				setAnnotations(s, map[string]string{AnnRotatedFor: rotation.requested, AnnRotatedAt: now.UTC().Format(time.RFC3339Nano)})
			}
		}
	})
}

// dropExpiredPrevious removes the previous secret once Resend no longer signs with it.
func (r *Reconciler) dropExpiredPrevious(ctx context.Context, rw *v1alpha1.ResendWebhook, sec signingSecret, now time.Time) (signingSecret, error) {
	exp := sec.previousExpiry()
	if exp.IsZero() || now.Before(exp) {
		return sec, nil
	}
	ctrl.LoggerFrom(ctx).Info("dropping the previous signing secret: Resend's dual-signing window is over", "secret", sec.obj.Name)
	return r.writeSigningSecret(ctx, rw, resendWant{secretName: sec.obj.Name}, sec, func(s *corev1.Secret) {
		delete(s.Data, render.PreviousSigningKey(sec.key))
	})
}

// rotationState is where the rotate-signing-secret annotation stands.
type rotationState struct {
	request   string    // the annotation's value ("" = none)
	done      string    // the request value of the last completed rotation
	requested string    // the request value a rotate call was last made for
	allowedAt time.Time // no rotation before (MinRotationInterval after the last one)
}

// pending: the annotation names a rotation not done yet.
func (s rotationState) pending() bool { return s.request != "" && s.request != s.done }

// due: pending, and the last rotation is long enough ago.
func (s rotationState) due(now time.Time) bool { return s.pending() && !now.Before(s.allowedAt) }

func (r *Reconciler) rotationState(rw *v1alpha1.ResendWebhook, sec signingSecret) rotationState {
	st := rotationState{
		request:   rw.Annotations[v1alpha1.AnnotationRotateSigningSecret],
		done:      sec.annotation(AnnRotatedFor),
		requested: sec.annotation(AnnRotationRequested),
	}
	if t := sec.timeAnnotation(AnnRotatedAt); t != nil {
		st.allowedAt = t.Add(r.resend.opts.MinRotationInterval)
	}
	return st
}

// rotate asks Resend for a new signing secret and stores it, keeping the replaced one under the
// previous key for the dual-signing window. The request is recorded in the Secret before the
// call, so a lost answer is recovered by the next sync (storeSecret) instead of rotating again.
func (r *Reconciler) rotate(ctx context.Context, c *resendapi.Client, rw *v1alpha1.ResendWebhook, want resendWant, sec signingSecret, webhookID string, rotation rotationState) (signingSecret, error) {
	sec, err := r.writeSigningSecret(ctx, rw, want, sec, func(s *corev1.Secret) {
		setAnnotations(s, map[string]string{AnnRotationRequested: rotation.request})
	})
	if err != nil {
		return sec, err
	}
	fresh, err := c.RotateSigningSecret(ctx, webhookID)
	if err != nil {
		return sec, err
	}
	if !validSigningSecret([]byte(fresh)) {
		return sec, signingSecretError("Resend returned a rotated signing secret that is not whsec_ + base64")
	}
	now := time.Now()
	old := sec.current()
	sec, err = r.writeSigningSecret(ctx, rw, want, sec, func(s *corev1.Secret) {
		setData(s, sec.key, []byte(fresh))
		if validSigningSecret(old) {
			setData(s, render.PreviousSigningKey(sec.key), old)
		}
		setAnnotations(s, map[string]string{
			AnnRotatedFor:        rotation.request,
			AnnRotatedAt:         now.UTC().Format(time.RFC3339Nano),
			AnnPreviousExpiresAt: now.Add(r.resend.opts.DualSigningWindow).UTC().Format(time.RFC3339Nano),
		})
	})
	if err != nil {
		return sec, err
	}
	ctrl.LoggerFrom(ctx).Info("rotated the signing secret at Resend", "webhookID", webhookID, "request", bounded.Text(rotation.request, 64))
	r.recorder.Eventf(rw, nil, corev1.EventTypeNormal, "SigningSecretRotated", "Rotate",
		"rotated the signing secret of webhook %s; receivers accept the previous one until %s", webhookID, now.Add(r.resend.opts.DualSigningWindow).UTC().Format(time.RFC3339))
	return sec, nil
}
