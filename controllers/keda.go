package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// KEDA scales the workers through these; the operator only writes their specs and reads the
// ScaledObject's Ready condition. KEDA itself reads the Redis Secrets the TriggerAuthentication
// names, with its own RBAC.
// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects;triggerauthentications,verbs=get;list;watch;create;patch;delete

// scalerObservation is what a reconcile saw of the workers' ScaledObject.
type scalerObservation struct {
	served bool                       // the cluster serves KEDA's kinds
	scaler *unstructured.Unstructured // nil: no ScaledObject controlled by the webhook
}

func (r *Reconciler) observeScaler(ctx context.Context, rw *v1alpha1.ResendWebhook, served bool) (scalerObservation, error) {
	obs := scalerObservation{served: served}
	if !workerAutoscaled(rw) || !served {
		return obs, nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(render.ScaledObjectGVK)
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: rw.Namespace, Name: render.ScalerName(rw)}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return obs, nil
		}
		return obs, err
	}
	if metav1.IsControlledBy(u, rw) {
		obs.scaler = u
	}
	return obs, nil
}

func workerAutoscaled(rw *v1alpha1.ResendWebhook) bool {
	return rw.Spec.Worker != nil && rw.Spec.Worker.Autoscaling != nil
}

// scalerCondition is WorkerAutoscalerReady: KEDA's own Ready condition of the ScaledObject (True
// once its scaler reads the pending list), or why there is none.
func scalerCondition(rw *v1alpha1.ResendWebhook, obs scalerObservation) metav1.Condition {
	typ := v1alpha1.ConditionWorkerAutoscalerReady
	a := rw.Spec.Worker.Autoscaling
	switch {
	case !obs.served:
		replicas := int32(v1alpha1.DefaultWorkerReplicas)
		if rw.Spec.Worker.Replicas != nil {
			replicas = *rw.Spec.Worker.Replicas
		}
		return *falseCond(typ, v1alpha1.ReasonKEDAAbsent, fmt.Sprintf(
			"the cluster does not serve keda.sh/v1alpha1 ScaledObject: install KEDA or remove spec.worker.autoscaling; the workers run spec.worker.replicas (%d) meanwhile", replicas))
	case obs.scaler == nil:
		return *falseCond(typ, v1alpha1.ReasonScaledObjectMissing, "no ScaledObject controlled by this ResendWebhook exists yet")
	}
	conds, _, _ := unstructured.NestedSlice(obs.scaler.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		reason, _ := m["reason"].(string)
		message, _ := m["message"].(string)
		switch m["status"] {
		case string(metav1.ConditionTrue):
			return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonScalerReady,
				Message: fmt.Sprintf("KEDA scales the workers between %d and %d replicas on the queue's pending list, %d pending events per replica",
					ptrValue(a.MinReplicas), a.MaxReplicas, ptrValue(a.PendingPerReplica))}
		case string(metav1.ConditionFalse):
			return *falseCond(typ, v1alpha1.ReasonScalerNotReady, fmt.Sprintf("KEDA reports the ScaledObject %s not ready: %s: %s",
				obs.scaler.GetName(), bounded.Text(reason, 64), bounded.Text(message, 256)))
		}
	}
	return *falseCond(typ, v1alpha1.ReasonPending, "waiting for KEDA to report on ScaledObject "+obs.scaler.GetName())
}
