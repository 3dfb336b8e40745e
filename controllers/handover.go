package controllers

import (
	"context"
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HandoverFieldManager holds the receivers' spec.replicas while an HPA takes over.
const HandoverFieldManager = "resend-webhook-operator-handover"

// handOverReplicas runs before a Deployment is applied without spec.replicas (autoscaling on:
// the receivers' HPA, the workers' KEDA). Server-side apply removes a field its only manager
// stops applying, and the API server then defaults replicas to 1: the pods would drop to one
// until the autoscaler reacts. So while our manager still owns the field, a second manager
// first applies the live value; the field then outlives our apply, and the autoscaler takes it
// over from there.
func (r *Reconciler) handOverReplicas(ctx context.Context, desired client.Object) error {
	d, ok := desired.(*appsv1.Deployment)
	if !ok || d.Spec.Replicas != nil {
		return nil
	}
	// Uncached: the cache strips managed fields.
	var live appsv1.Deployment
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(d), &live); err != nil {
		return client.IgnoreNotFound(err) // a new Deployment has no replicas to keep
	}
	if live.Spec.Replicas == nil || !appliedReplicas(live.ManagedFields) {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apps/v1")
	u.SetKind("Deployment")
	u.SetNamespace(live.Namespace)
	u.SetName(live.Name)
	if err := unstructured.SetNestedField(u.Object, int64(*live.Spec.Replicas), "spec", "replicas"); err != nil {
		return err
	}
	return r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(HandoverFieldManager))
}

// appliedReplicas reports whether the operator's apply owns spec.replicas.
func appliedReplicas(entries []metav1.ManagedFieldsEntry) bool {
	for _, e := range entries {
		if e.Manager != FieldManager || e.Operation != metav1.ManagedFieldsOperationApply || e.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if json.Unmarshal(e.FieldsV1.Raw, &fields) == nil {
			if _, ok := fields.Spec["f:replicas"]; ok {
				return true
			}
		}
	}
	return false
}
