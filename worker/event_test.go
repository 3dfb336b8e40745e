package worker

import (
	"bytes"
	"testing"
)

var envelopeCases = []string{
	`{"type":"email.sent","created_at":"2026-11-28T10:00:01.000Z","data":{"email_id":"e1","to":["a@x"]}}`,
	` {"data" : [1, 2] , "created_at" : "2024-11-22 23:41:11.894719+00"} `, `{"Data":null,"CREATED_AT":null}`,
	`{"created_at":"2026-01-01T00:00:00Z","created_at":"not a time"}`, `{"created_at":"not a time","created_at":"2026-01-01T00:00:00Z"}`,
	`{"created_at":5,"data":"x","data":{"y":1}}`, `{"type":5,"data":{}}`, `{"type":null,"data":1}`, `{"Type":["x"]}`,
	`{"\u0064ata":true}`, `{"created\u005fat":"2026-01-01T00:00:00Z"}`, `{}`, `[]`, `null`, `"x"`, `1`, `{"data":1`, `not json`, ``,
	"{\"data\":\"\xff\"}",
}

func checkEnvelope(t *testing.T, body []byte) {
	t.Helper()
	fast, slow := &Event{Body: body}, &Event{Body: body}
	fast.parseEnvelope()
	slow.parseEnvelopeSlowly()
	if !fast.CreatedAt.Equal(slow.CreatedAt) || !bytes.Equal(fast.Data, slow.Data) || (fast.Data == nil) != (slow.Data == nil) ||
		(fast.envelopeErr == nil) != (slow.envelopeErr == nil) || (fast.envelopeErr != nil && fast.envelopeErr.Error() != slow.envelopeErr.Error()) {
		t.Errorf("%q: created %v data %q err %v; json.Unmarshal: created %v data %q err %v", body,
			fast.CreatedAt, fast.Data, fast.envelopeErr, slow.CreatedAt, slow.Data, slow.envelopeErr)
	}
	if len(fast.Data) > 0 && len(body) > 0 && &fast.Data[0] == &body[0] {
		t.Errorf("%q: Data aliases Body", body)
	}
}

// TestParseEnvelopeMatchesUnmarshal: the one-pass envelope reading gives what json.Unmarshal did.
func TestParseEnvelopeMatchesUnmarshal(t *testing.T) {
	for _, body := range envelopeCases {
		checkEnvelope(t, []byte(body))
	}
	checkEnvelope(t, eventBody(EventEmailBounced, 1024))
}

// FuzzParseEnvelope holds parseEnvelope to json.Unmarshal on any body.
func FuzzParseEnvelope(f *testing.F) {
	for _, body := range envelopeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkEnvelope(t, body) })
}
