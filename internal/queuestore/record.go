package queuestore

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// Record is one dead letter: everything needed to replay the event with the same policy.
type Record struct {
	// ID is the task id, the svix-id for tasks from a receiver.
	ID string `json:"id"`
	// TaskType is the Asynq task type, "resend:<event type>".
	TaskType string `json:"taskType"`
	// Payload is the event body byte for byte.
	Payload []byte `json:"-"`
	// Headers are the task headers (svix-id, svix-timestamp, svix-signature, received-at, webhook).
	Headers map[string]string `json:"-"`
	// Attempts is how many attempts were made; MaxAttempts how many the task allowed.
	Attempts    int `json:"attempts"`
	MaxAttempts int `json:"maxAttempts"`
	// Timeout and Retention are the task's (Asynq Timeout and Retention); zero when unknown.
	Timeout   time.Duration `json:"-"`
	Retention time.Duration `json:"-"`
	// LastError is the last attempt's error, bounded and without URL paths (see CleanError).
	LastError string `json:"lastError"`
	// FailedAt is when the event was dead-lettered.
	FailedAt time.Time `json:"failedAt"`
	// Queue is the queue the dead letter belongs to, set by Sharded.List (not stored: the
	// record's key says it).
	Queue string `json:"queue,omitempty"`
}

// EventType is the Resend event type ("email.bounced"), or the task type when it is not ours.
func (r Record) EventType() string {
	if et, ok := task.EventType(r.TaskType); ok {
		return et
	}
	return r.TaskType
}

// Webhook is the namespace/name of the ResendWebhook that received the event.
func (r Record) Webhook() string { return r.Headers[task.HeaderWebhook] }

// ReceivedAt is when the receiver accepted the event (RFC 3339, as the receiver wrote it).
func (r Record) ReceivedAt() string { return r.Headers[task.HeaderReceivedAt] }

// Record hash fields.
const (
	fType        = "type"
	fPayload     = "payload"
	fHeaders     = "headers"
	fAttempts    = "attempts"
	fMaxAttempts = "max_attempts"
	fTimeout     = "timeout_s"
	fRetention   = "retention_s"
	fError       = "error"
	fFailedAt    = "failed_at_ms"
)

// summaryFields are the fields List reads: everything but the payload.
var summaryFields = []string{fType, fHeaders, fAttempts, fMaxAttempts, fTimeout, fRetention, fError, fFailedAt}

// fields flattens r into HSET arguments (field, value, …).
func (r Record) fields() []any {
	headers, _ := json.Marshal(r.Headers) // a map[string]string always marshals
	return []any{
		fType, r.TaskType, fPayload, r.Payload, fHeaders, headers,
		fAttempts, r.Attempts, fMaxAttempts, r.MaxAttempts,
		fTimeout, int64(r.Timeout / time.Second), fRetention, int64(r.Retention / time.Second),
		fError, CleanError(r.LastError), fFailedAt, r.FailedAt.UnixMilli(),
	}
}

// decodeRecord builds a Record from a hash read with HGETALL (or HMGET of summaryFields).
func decodeRecord(id string, h map[string]string) (Record, error) {
	r := Record{ID: id, TaskType: h[fType], LastError: h[fError]}
	if p, ok := h[fPayload]; ok {
		r.Payload = []byte(p)
	}
	if hs := h[fHeaders]; hs != "" {
		if err := json.Unmarshal([]byte(hs), &r.Headers); err != nil {
			return r, fmt.Errorf("dead letter %s: headers: %w", id, err)
		}
	}
	ints := map[string]*int64{}
	var attempts, maxAttempts, timeout, retention, failedAt int64
	ints[fAttempts], ints[fMaxAttempts], ints[fTimeout], ints[fRetention], ints[fFailedAt] = &attempts, &maxAttempts, &timeout, &retention, &failedAt
	for f, p := range ints {
		if v, ok := h[f]; ok && v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return r, fmt.Errorf("dead letter %s: field %s: %w", id, f, err)
			}
			*p = n
		}
	}
	r.Attempts, r.MaxAttempts = int(attempts), int(maxAttempts)
	r.Timeout, r.Retention = time.Duration(timeout)*time.Second, time.Duration(retention)*time.Second
	if failedAt > 0 {
		r.FailedAt = time.UnixMilli(failedAt).UTC()
	}
	return r, nil
}

// MaxErrorBytes bounds an error message stored with a dead letter or handed to Asynq: a
// handler's error may quote attacker-sized input (the event body).
const MaxErrorBytes = 1024

// urlPathOrQuery matches the part of an http(s) URL after its host: path, query, fragment.
var urlPathOrQuery = regexp.MustCompile(`(?i)(https?://[^/?#\s"'<>]+)[/?#][^\s"'<>]*`)

// CleanError makes an error message safe to store and log: the path, query and fragment of
// every http(s) URL in it are cut (Go's *url.Error quotes the full URL, which may carry a token),
// and the result is bounded to MaxErrorBytes of valid UTF-8.
func CleanError(msg string) string {
	return bounded.Cut(urlPathOrQuery.ReplaceAllString(msg, "$1/…"), MaxErrorBytes, "… (truncated)")
}
