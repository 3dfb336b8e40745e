package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// The manager's own series (served with controller-runtime's on the manager's metrics
// endpoint): the queue figures and conditions of every webhook, so alerts work without any
// worker or receiver running.
var (
	queueTasks = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwh_queue_tasks",
		Help: "Tasks in the webhook's Asynq queue by state (archived = dead letters), as last read by the operator. Absent until a read succeeded.",
	}, []string{"namespace", "name", "state"})
	conditionStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwh_webhook_condition",
		Help: "1 when the webhook's status condition of this type is True, 0 when it is False or Unknown.",
	}, []string{"namespace", "name", "type"})
)

func init() {
	crmetrics.Registry.MustRegister(queueTasks, conditionStatus)
}

// setQueueMetrics exports figures read from Redis (only after a successful read).
func setQueueMetrics(webhook types.NamespacedName, q v1alpha1.QueueStatus) {
	for state, n := range map[string]int64{"pending": q.Pending, "active": q.Active, "scheduled": q.Scheduled, "retry": q.Retry, "archived": q.Archived} {
		queueTasks.WithLabelValues(webhook.Namespace, webhook.Name, state).Set(float64(n))
	}
}

// setConditionMetrics exports the status conditions after; types only in before are dropped.
// Series are never deleted and re-created on an update: a scrape in between would see them
// missing and restart every alert's "for" clock.
func setConditionMetrics(webhook types.NamespacedName, before, after []metav1.Condition) {
	for _, c := range before {
		if meta.FindStatusCondition(after, c.Type) == nil {
			conditionStatus.DeleteLabelValues(webhook.Namespace, webhook.Name, c.Type)
		}
	}
	for _, c := range after {
		v := 0.0
		if c.Status == metav1.ConditionTrue {
			v = 1
		}
		conditionStatus.WithLabelValues(webhook.Namespace, webhook.Name, c.Type).Set(v)
	}
}

// deleteMetrics drops every series of a webhook that is gone.
func deleteMetrics(webhook types.NamespacedName) {
	match := prometheus.Labels{"namespace": webhook.Namespace, "name": webhook.Name}
	queueTasks.DeletePartialMatch(match)
	conditionStatus.DeletePartialMatch(match)
}
