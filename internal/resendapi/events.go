package resendapi

// EventTypes are the event types a Resend webhook can subscribe to (registering "all events"
// means listing every one), in the order the sender and the simulator cycle through them. The CRD
// enum of spec.events lists the same (a test keeps them equal).
var EventTypes = []string{
	"email.sent", "email.delivered", "email.bounced", "email.complained", "email.opened",
	"email.clicked", "email.failed", "email.delivery_delayed", "email.scheduled",
	"email.suppressed", "email.received",
	"contact.created", "contact.updated", "contact.deleted",
	"domain.created", "domain.updated", "domain.deleted",
	"suppression.added", "suppression.removed",
}
