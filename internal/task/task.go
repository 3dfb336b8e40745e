// Package task is the format of the Asynq task the receiver enqueues and the worker consumes
// (docs/design.md). Both sides use these names; nothing else spells them.
package task

import "strings"

// TypePrefix starts every task type: "resend:" + the Resend event type.
const TypePrefix = "resend:"

// Task header names.
const (
	HeaderSvixID        = "svix-id"
	HeaderSvixTimestamp = "svix-timestamp"
	HeaderSvixSignature = "svix-signature"
	HeaderReceivedAt    = "received-at" // RFC 3339, UTC
	HeaderWebhook       = "webhook"     // namespace/name of the ResendWebhook
)

// TypeName returns the task type for a Resend event type: "email.bounced" → "resend:email.bounced".
func TypeName(eventType string) string { return TypePrefix + eventType }

// EventType returns the Resend event type of a task type, and false when it is not one of ours.
func EventType(taskType string) (string, bool) {
	return strings.CutPrefix(taskType, TypePrefix)
}
