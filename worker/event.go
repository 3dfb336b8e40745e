package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/resend/resend-go/v3"

	jsonenv "github.com/resend-webhook-operator/resend-webhook-operator/internal/envelope"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// Event is one Resend webhook as the receiver queued it.
type Event struct {
	// ID is the svix-id Resend sent: the same for every delivery of one event, so use it to
	// make handlers idempotent (a task can run more than once, e.g. after a crash).
	ID string
	// Type is the Resend event type, e.g. "email.bounced".
	Type string
	// CreatedAt is the envelope's created_at (zero when absent).
	CreatedAt time.Time
	// Data is the envelope's data object, undecoded; see Decode and Typed.
	Data json.RawMessage
	// Body is the request body exactly as Resend sent it.
	Body []byte
	// Webhook is the namespace/name of the ResendWebhook that received it.
	Webhook string
	// ReceivedAt is when the receiver accepted it (zero when unknown).
	ReceivedAt time.Time
	// Attempt is this attempt's number, 1-based; MaxAttempts is the total allowed.
	Attempt, MaxAttempts int
	// Headers are the task headers (svix-id, svix-timestamp, svix-signature, received-at, webhook).
	Headers map[string]string

	envelopeErr error
}

// envelope is the top level every Resend webhook body shares.
type envelope struct {
	Type      string          `json:"type"`
	CreatedAt Time            `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// newEvent builds the Event of an asynq task. A body that is not a Resend envelope still yields
// an Event (so a forwarder can pass it on); Decode then reports why.
func newEvent(ctx context.Context, t *asynq.Task, eventType string) *Event {
	h := t.Headers()
	ev := &Event{ID: h[task.HeaderSvixID], Type: eventType, Body: t.Payload(), Webhook: h[task.HeaderWebhook], Headers: h}
	if ev.ID == "" {
		ev.ID, _ = asynq.GetTaskID(ctx)
	}
	if at, err := time.Parse(time.RFC3339Nano, h[task.HeaderReceivedAt]); err == nil {
		ev.ReceivedAt = at
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	ev.Attempt, ev.MaxAttempts = retried+1, maxRetry+1
	return ev
}

// parseEnvelope fills CreatedAt and Data from Body, as json.Unmarshal into an envelope would
// (FuzzParseEnvelope holds it to that) but in one pass without reflection: decoding the whole
// body was most of the worker's own cost per event (BenchmarkProcessTask).
func (ev *Event) parseEnvelope() {
	var env envelope
	var data []byte
	wrongType := false
	valid, object := jsonenv.Fields(ev.Body, func(name, value []byte) {
		switch {
		case jsonenv.NameIs(name, "type"):
			wrongType = wrongType || (value[0] != '"' && value[0] != 'n')
		case jsonenv.NameIs(name, "created_at"):
			_ = env.CreatedAt.UnmarshalJSON(value) // never fails; a later value overwrites only when it parses
		case jsonenv.NameIs(name, "data"):
			data = value
		}
	})
	if !valid || !object || wrongType { // rare: encoding/json decides, and says why
		ev.parseEnvelopeSlowly()
		return
	}
	ev.CreatedAt = env.CreatedAt.Time
	if data != nil {
		ev.Data = bytes.Clone(data) // json.RawMessage copies too: Data does not alias Body
	}
}

// parseEnvelopeSlowly is parseEnvelope by json.Unmarshal.
func (ev *Event) parseEnvelopeSlowly() {
	var env envelope
	if err := json.Unmarshal(ev.Body, &env); err != nil {
		ev.envelopeErr = fmt.Errorf("event body is not a Resend webhook envelope: %w", err)
		return
	}
	ev.CreatedAt, ev.Data = env.CreatedAt.Time, env.Data
}

// Decode unmarshals Data into v. Failures are permanent: retrying cannot fix the payload, so
// a handler that returns the error sends the event to the dead-letter set at once.
func (ev *Event) Decode(v any) error {
	if ev.envelopeErr != nil {
		return Permanent(ev.envelopeErr)
	}
	if len(ev.Data) == 0 {
		return Permanent(fmt.Errorf("%s event %s has no data", ev.Type, ev.ID))
	}
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return Permanent(fmt.Errorf("decode data of %s event %s: %w", ev.Type, ev.ID, err))
	}
	return nil
}

// Typed adapts a handler of a typed payload (EmailData, ContactData, DomainData or your own
// struct) to a HandlerFunc; a payload that does not decode is dead-lettered at once.
func Typed[T any](fn func(ctx context.Context, ev *Event, data T) error) HandlerFunc {
	return func(ctx context.Context, ev *Event) error {
		var data T
		if err := ev.Decode(&data); err != nil {
			return err
		}
		return fn(ctx, ev, data)
	}
}

// Permanent marks err as not worth retrying: the event is dead-lettered at once (see the dlq
// command to list and replay dead letters). A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool { return errors.Is(err, asynq.SkipRetry) }

type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() + " (permanent, not retried)" }
func (e permanentError) Unwrap() []error { return []error{e.err, asynq.SkipRetry} }

// Event types Resend sends. Those resend-go defines are re-exported from it.
const (
	EventEmailSent            = resend.EventEmailSent
	EventEmailDelivered       = resend.EventEmailDelivered
	EventEmailDeliveryDelayed = resend.EventEmailDeliveryDelayed
	EventEmailComplained      = resend.EventEmailComplained
	EventEmailBounced         = resend.EventEmailBounced
	EventEmailOpened          = resend.EventEmailOpened
	EventEmailClicked         = resend.EventEmailClicked
	EventEmailReceived        = resend.EventEmailReceived
	EventEmailFailed          = resend.EventEmailFailed
	EventEmailScheduled       = "email.scheduled"
	EventEmailSuppressed      = "email.suppressed"
	EventContactCreated       = resend.EventContactCreated
	EventContactUpdated       = resend.EventContactUpdated
	EventContactDeleted       = resend.EventContactDeleted
	EventDomainCreated        = resend.EventDomainCreated
	EventDomainUpdated        = resend.EventDomainUpdated
	EventDomainDeleted        = resend.EventDomainDeleted
	EventSuppressionAdded     = "suppression.added"
	EventSuppressionRemoved   = "suppression.removed"
)

// EmailData is the data of email.* events. Fields that only some events carry are pointers or
// may be empty: Bounce (email.bounced), Click (email.clicked), Failed (email.failed).
type EmailData struct {
	EmailID     string   `json:"email_id"`
	BroadcastID string   `json:"broadcast_id,omitempty"`
	TemplateID  string   `json:"template_id,omitempty"`
	CreatedAt   Time     `json:"created_at"`
	From        string   `json:"from"`
	To          []string `json:"to"`
	Subject     string   `json:"subject"`
	Tags        Tags     `json:"tags,omitempty"`
	Bounce      *Bounce  `json:"bounce,omitempty"`
	Click       *Click   `json:"click,omitempty"`
	Failed      *Failure `json:"failed,omitempty"`
}

// Bounce says why an email bounced.
type Bounce struct {
	Type    string `json:"type"`    // e.g. "Permanent", "Transient"
	SubType string `json:"subType"` // e.g. "Suppressed", "General"
	Message string `json:"message"`
}

// Click is the link a recipient clicked.
type Click struct {
	Link      string `json:"link"`
	IPAddress string `json:"ipAddress"`
	UserAgent string `json:"userAgent"`
	Timestamp Time   `json:"timestamp"`
}

// Failure says why Resend could not send an email.
type Failure struct {
	Reason string `json:"reason"`
}

// Tags are an email's tags. Resend sends them as an object; the older list form
// [{"name":…,"value":…}] decodes too.
type Tags map[string]string

// UnmarshalJSON accepts both the object and the list form.
func (t *Tags) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err == nil {
		*t = m
		return nil
	}
	var list []struct{ Name, Value string }
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("tags are neither an object nor a list of {name, value}: %w", err)
	}
	*t = make(Tags, len(list))
	for _, kv := range list {
		(*t)[kv.Name] = kv.Value
	}
	return nil
}

// ContactData is the data of contact.* events.
type ContactData struct {
	ID           string   `json:"id"`
	AudienceID   string   `json:"audience_id,omitempty"`
	SegmentIDs   []string `json:"segment_ids,omitempty"`
	Email        string   `json:"email"`
	FirstName    string   `json:"first_name,omitempty"`
	LastName     string   `json:"last_name,omitempty"`
	Unsubscribed bool     `json:"unsubscribed"`
	CreatedAt    Time     `json:"created_at"`
	UpdatedAt    Time     `json:"updated_at"`
}

// DomainData is the data of domain.* events; its DNS records use resend-go's Record type.
type DomainData struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Status    string          `json:"status"`
	Region    string          `json:"region,omitempty"`
	CreatedAt Time            `json:"created_at"`
	Records   []resend.Record `json:"records,omitempty"`
}

// Time is a timestamp in a Resend payload. It accepts RFC 3339 and the "2006-01-02 15:04:05+00"
// form Postgres-backed APIs emit; a value in neither form decodes as the zero time rather than
// failing the whole event over a timestamp.
type Time struct{ time.Time }

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07"}

// UnmarshalJSON parses the layouts above; null and unknown forms leave t as it is (zero).
func (t *Time) UnmarshalJSON(b []byte) error {
	s, ok := jsonenv.String(b)
	if !ok {
		return nil // not a string (e.g. null): keep the zero time
	}
	for _, layout := range timeLayouts {
		if parsed, err := time.Parse(layout, s); err == nil {
			t.Time = parsed
			return nil
		}
	}
	return nil
}
