// Package controllers reconciles ResendWebhook objects into the receiver and worker
// Deployments, Service, Ingress, PodDisruptionBudget and HorizontalPodAutoscaler, and reports
// what it observes (Deployments, Ingress address, Redis reachability, durability and queue
// figures) in their status and as manager metrics. It never applies to or deletes an object of
// the same name that the webhook does not control (NameConflict), applies nothing that breaks
// the operator's tenant policy (PolicyViolation), and bounds its status writes. The objects
// themselves are built by the pure functions of package render; RBAC markers are in setup.go.
package controllers
