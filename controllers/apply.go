package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// applyOutcome is what the policy check, the ownership check and the apply report to Ready.
type applyOutcome struct {
	reason  string // "" when every child was applied; else a Ready reason
	message string
	err     error // an API error: the reconcile is retried with backoff
}

// conditionApplied is the type of the pseudo-condition applyOutcome folds into Ready as; it is
// not stored in the status (Ready's reason and message carry it).
const conditionApplied = "Applied"

// mayApply is false after a policy violation: nothing new is applied then. After a name
// conflict the children that do not conflict are still applied.
func (o applyOutcome) mayApply() bool { return o.reason != v1alpha1.ReasonPolicyViolation }

// after adds the result of the apply.
func (o applyOutcome) after(err error) applyOutcome {
	if err == nil {
		return o
	}
	o.err = err
	if o.reason == "" {
		o.reason, o.message = v1alpha1.ReasonApplyFailed, err.Error()
	} else {
		o.message += "; " + err.Error()
	}
	return o
}

func (o applyOutcome) condition() metav1.Condition {
	if o.reason == "" {
		return metav1.Condition{Type: conditionApplied, Status: metav1.ConditionTrue, Reason: "Applied", Message: "every object is applied"}
	}
	return *falseCond(conditionApplied, o.reason, o.message)
}

// checkPolicy holds back every apply of a webhook that breaks the operator's tenant policy.
func (r *Reconciler) checkPolicy(rw *v1alpha1.ResendWebhook) applyOutcome {
	if err := r.opts.Policy.Check(rw); err != nil {
		return applyOutcome{reason: v1alpha1.ReasonPolicyViolation, message: err.Error()}
	}
	return applyOutcome{}
}

// plan is what the apply will do: the children to apply (without those whose name another
// object holds) and the ones among them that do not exist yet.
type plan struct {
	render.Children
	create map[string]bool // childKey → absent from the cluster
}

// checkOwnership leaves out of the plan every child whose name is taken by an object this
// webhook does not control: such an object is never applied to, so never modified or adopted.
func (r *Reconciler) checkOwnership(ctx context.Context, rw *v1alpha1.ResendWebhook, children render.Children) (plan, applyOutcome) {
	p := plan{Children: render.Children{Absent: children.Absent}, create: map[string]bool{}}
	var conflicts []string
	var errs []error
	for _, obj := range children.Present {
		state, err := r.liveState(ctx, rw, obj)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("checking %s %s: %w", kindOf(obj), obj.GetName(), err))
		case state == liveForeign:
			conflicts = append(conflicts, fmt.Sprintf("%s %s already exists and is not controlled by this ResendWebhook", kindOf(obj), obj.GetName()))
		default:
			p.create[childKey(obj)] = state == liveAbsent
			p.Present = append(p.Present, obj)
		}
	}
	var o applyOutcome
	if len(conflicts) > 0 {
		o = applyOutcome{reason: v1alpha1.ReasonNameConflict,
			message: strings.Join(conflicts, "; ") + ": rename the ResendWebhook or remove the object (the operator never modifies or deletes it)"}
	}
	return p, o.after(errors.Join(errs...))
}

type liveOwnership int

const (
	liveAbsent liveOwnership = iota
	liveOurs
	liveForeign
)

// liveState says whether a child about to be applied exists and who controls it. The cache
// only holds objects with the operator's label, so a child not cached as ours is looked up
// directly (metadata only).
func (r *Reconciler) liveState(ctx context.Context, rw *v1alpha1.ResendWebhook, desired client.Object) (liveOwnership, error) {
	key := client.ObjectKeyFromObject(desired)
	cached := desired.DeepCopyObject().(client.Object)
	if err := r.client.Get(ctx, key, cached); err == nil && metav1.IsControlledBy(cached, rw) {
		return liveOurs, nil
	} else if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(desired.GetObjectKind().GroupVersionKind())
	switch err := r.apiReader.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
		return liveAbsent, nil
	case err != nil:
		return 0, err
	case metav1.IsControlledBy(live, rw):
		return liveOurs, nil
	}
	return liveForeign, nil
}

// apply server-side applies the present children and deletes absent ones this webhook controls.
// A child whose apply request is the one last sent and whose cached resourceVersion is the one
// that apply returned is not sent again. Every child is tried; the errors are joined.
func (r *Reconciler) apply(ctx context.Context, rw *v1alpha1.ResendWebhook, p plan) error {
	key := client.ObjectKeyFromObject(rw)
	var errs []error
	for _, obj := range p.Present {
		create := p.create[childKey(obj)]
		u, err := render.ApplyObject(obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hash := requestHash(u)
		if r.applied.unchanged(ctx, r.client, key, obj, hash) {
			continue
		}
		if !create {
			err = r.handOverReplicas(ctx, obj)
		}
		var rv string
		if err == nil {
			rv, err = r.applyOne(ctx, u, create)
		}
		if err != nil {
			r.applied.forgetChild(key, obj)
			errs = append(errs, fmt.Errorf("apply %s %s: %w", kindOf(obj), obj.GetName(), err))
			continue
		}
		r.applied.remember(key, obj, hash, rv)
	}
	for _, obj := range p.Absent {
		if err := r.deleteIfControlled(ctx, rw, obj); err != nil {
			errs = append(errs, fmt.Errorf("delete %s %s: %w", kindOf(obj), obj.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// applyOne applies one object with the operator's field manager and returns the resulting
// resourceVersion. An object known to be ours takes back fields others changed; a new one is
// created without force, so an object of the same name that appeared since the ownership check
// makes the apply fail instead of being taken over. An unchanged object is a no-op at the API
// server (no new resourceVersion).
func (r *Reconciler) applyOne(ctx context.Context, u *unstructured.Unstructured, create bool) (string, error) {
	opts := []client.ApplyOption{client.FieldOwner(FieldManager)}
	if !create {
		opts = append(opts, client.ForceOwnership)
	}
	if err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), opts...); err != nil {
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

func kindOf(obj client.Object) string { return obj.GetObjectKind().GroupVersionKind().Kind }

func childKey(obj client.Object) string { return kindOf(obj) + "/" + obj.GetName() }
