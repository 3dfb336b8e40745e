// Package controllers reconciles ResendWebhook objects into the receiver and worker
// Deployments, Service, Ingress, PodDisruptionBudget and HorizontalPodAutoscaler, and reports
// what it observes (Deployments, Ingress address, Redis and queue figures) in their status.
// The objects themselves are built by the pure functions of package render; RBAC markers are
// in setup.go.
package controllers
