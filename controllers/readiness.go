package controllers

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// deploymentCondition says whether a Deployment runs the current spec, following kstatus'
// rules for "current": the deployment controller has observed the latest generation, every
// desired pod is updated and available, no old pod is left, and the rollout has not exceeded
// its progress deadline.
func deploymentCondition(typ string, d *appsv1.Deployment) metav1.Condition {
	if d == nil {
		return *falseCond(typ, v1alpha1.ReasonDeploymentMissing, "no Deployment controlled by this ResendWebhook exists yet")
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation {
		return *falseCond(typ, v1alpha1.ReasonProgressing, fmt.Sprintf("Deployment %s: generation %d not yet observed by the deployment controller", d.Name, d.Generation))
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return *falseCond(typ, v1alpha1.ReasonRolloutFailed, fmt.Sprintf("Deployment %s: rollout exceeded its progress deadline (%d of %d pods updated): %s",
				d.Name, st.UpdatedReplicas, desiredReplicas(d), bounded.Text(c.Message, 256)))
		}
	}
	want := desiredReplicas(d)
	switch {
	case want == 0:
		return *falseCond(typ, v1alpha1.ReasonScaledToZero, fmt.Sprintf("Deployment %s is scaled to 0 replicas", d.Name))
	case st.UpdatedReplicas < want:
		return *falseCond(typ, v1alpha1.ReasonProgressing, fmt.Sprintf("Deployment %s: %d of %d pods run the current spec", d.Name, st.UpdatedReplicas, want))
	case st.Replicas > st.UpdatedReplicas:
		return *falseCond(typ, v1alpha1.ReasonProgressing, fmt.Sprintf("Deployment %s: %d old pods are still terminating", d.Name, st.Replicas-st.UpdatedReplicas))
	case st.AvailableReplicas < want || !deploymentAvailable(d):
		return *falseCond(typ, v1alpha1.ReasonUnavailable, fmt.Sprintf("Deployment %s: %d of %d pods available", d.Name, st.AvailableReplicas, want))
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAvailable,
		Message: fmt.Sprintf("Deployment %s: %d of %d pods run the current spec and are available", d.Name, st.AvailableReplicas, want)}
}

// desiredReplicas is spec.replicas, which the API server defaults to 1.
func desiredReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	return slices.ContainsFunc(d.Status.Conditions, func(c appsv1.DeploymentCondition) bool {
		return c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue
	})
}

// readyPrecedence lists the reasons Ready takes over from the condition that is not True, most
// urgent first, so that Ready's reason (the wide Reason column, alerts) says what to fix. Any
// other failing condition makes Ready NotReady.
var readyPrecedence = []string{
	v1alpha1.ReasonPolicyViolation,
	v1alpha1.ReasonNameConflict,
	v1alpha1.ReasonApplyFailed,
	v1alpha1.ReasonRolloutFailed,
	v1alpha1.ReasonSinkUnavailable,
	v1alpha1.ReasonScaledToZero,
}

// readyCondition folds the applicable conditions into Ready: True when every one is True. A
// condition that must not block Ready in some status (e.g. Unknown) is left out of the list by
// the caller.
func readyCondition(applicable []metav1.Condition) metav1.Condition {
	var notTrue []string
	reason := v1alpha1.ReasonNotReady
	rank := len(readyPrecedence)
	for _, c := range applicable {
		if c.Status == metav1.ConditionTrue {
			continue
		}
		if c.Type == conditionApplied {
			notTrue = append(notTrue, c.Message)
		} else {
			notTrue = append(notTrue, c.Type+": "+c.Message)
		}
		if i := slices.Index(readyPrecedence, c.Reason); i >= 0 && i < rank {
			reason, rank = c.Reason, i
		}
	}
	if len(notTrue) > 0 {
		return *falseCond(v1alpha1.ConditionReady, reason, strings.Join(notTrue, "; "))
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady, Message: "the current spec is live and every component is ready"}
}
