// Package controllers reconciles ResendWebhook objects into the receiver and worker
// Deployments, Service, Ingress, PodDisruptionBudget and HorizontalPodAutoscaler.
package controllers

// +kubebuilder:rbac:groups=webhooks.resend-operator.dev,resources=resendwebhooks,verbs=get;list;watch
// +kubebuilder:rbac:groups=webhooks.resend-operator.dev,resources=resendwebhooks/status,verbs=get;update;patch
