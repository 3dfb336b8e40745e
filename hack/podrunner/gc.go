package podrunner

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// The garbage collector of kube-controller-manager does not run in envtest. The runner does
// its job for the kinds the operator creates: an object whose every owner reference points at
// an object that no longer exists (or exists with another UID) is deleted in the background.
// Deleting a ResendWebhook therefore deletes its Deployments, and the Deployment reconciler
// then stops their processes.

// gcKinds are the kinds swept for orphans.
func gcKinds() []client.ObjectList {
	return []client.ObjectList{
		&appsv1.DeploymentList{}, &corev1.ServiceList{}, &networkingv1.IngressList{},
		&policyv1.PodDisruptionBudgetList{}, &autoscalingv2.HorizontalPodAutoscalerList{},
		&corev1.ConfigMapList{},
	}
}

// OwnerKind is the ResendWebhook kind: its deletions trigger an immediate sweep.
var OwnerKind = schema.GroupVersionKind{Group: "webhooks.resend-operator.dev", Version: "v1alpha1", Kind: "ResendWebhook"}

func (r *Runner) setupGC(mgr manager.Manager) error {
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		r.watchOwnerDeletions(ctx, mgr)
		t := time.NewTicker(r.cfg.GCInterval)
		defer t.Stop()
		for {
			r.collectGarbage(ctx)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			case <-r.gcNow:
			}
		}
	}))
}

// watchOwnerDeletions sweeps as soon as a ResendWebhook is deleted (metadata-only watch). When
// the CRD is not installed the periodic sweep still runs.
func (r *Runner) watchOwnerDeletions(ctx context.Context, mgr manager.Manager) {
	var m metav1.PartialObjectMetadata
	m.SetGroupVersionKind(OwnerKind)
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	inf, err := mgr.GetCache().GetInformer(ictx, &m)
	if err == nil {
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(any) { r.CollectGarbageNow() }})
	}
	if err != nil {
		r.log.Warn("gc: not watching ResendWebhook deletions; relying on the periodic sweep", "error", err)
	}
}

// CollectGarbageNow asks for a sweep at once (e.g. right after deleting an owner).
func (r *Runner) CollectGarbageNow() {
	select {
	case r.gcNow <- struct{}{}:
	default:
	}
}

func (r *Runner) collectGarbage(ctx context.Context) {
	owners := map[types.UID]bool{} // owner UID → exists; one lookup per owner per sweep
	for _, list := range gcKinds() {
		if err := r.client.List(ctx, list); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("gc: list", "kind", fmt.Sprintf("%T", list), "error", err)
			}
			continue
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			continue
		}
		for _, item := range items {
			obj, ok := item.(client.Object)
			if !ok || obj.GetDeletionTimestamp() != nil || len(obj.GetOwnerReferences()) == 0 {
				continue
			}
			if r.anyOwnerExists(ctx, obj, owners) {
				continue
			}
			err := r.client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground),
				client.Preconditions{UID: new(obj.GetUID())})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				r.log.Warn("gc: delete orphan", "object", obj.GetNamespace()+"/"+obj.GetName(), "error", err)
				continue
			}
			r.log.Info("gc: deleted object whose owners are gone", "kind", fmt.Sprintf("%T", item), "object", obj.GetNamespace()+"/"+obj.GetName())
		}
	}
}

func (r *Runner) anyOwnerExists(ctx context.Context, obj client.Object, seen map[types.UID]bool) bool {
	for _, ref := range obj.GetOwnerReferences() {
		exists, ok := seen[ref.UID]
		if !ok {
			exists = r.ownerExists(ctx, obj.GetNamespace(), ref)
			seen[ref.UID] = exists
		}
		if exists {
			return true
		}
	}
	return false
}

// ownerExists looks the owner up uncached (the runner does not watch every kind). Errors other
// than "not found" count as "exists": never delete on doubt.
func (r *Runner) ownerExists(ctx context.Context, ns string, ref metav1.OwnerReference) bool {
	var m metav1.PartialObjectMetadata
	m.APIVersion, m.Kind = ref.APIVersion, ref.Kind
	err := r.api.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &m)
	switch {
	case err == nil:
		return m.UID == ref.UID
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		return false
	}
	return true
}
