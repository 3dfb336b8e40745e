package sender

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// SampleEvent returns a JSON body shaped like Resend's payload for eventType; seq makes ids and
// addresses of different samples differ.
func SampleEvent(eventType string, seq int, now time.Time) []byte {
	created := now.UTC().Format(time.RFC3339Nano)
	body := map[string]any{"type": eventType, "created_at": created, "data": sampleData(eventType, seq, created)}
	b, err := json.Marshal(body)
	if err != nil { // maps of strings and slices always marshal
		panic(err)
	}
	return b
}

func sampleData(eventType string, seq int, created string) map[string]any {
	id := fmt.Sprintf("4ef9a417-02e9-4d39-ad75-%012d", seq)
	to := fmt.Sprintf("user%d@example.com", seq)
	family, _, _ := strings.Cut(eventType, ".")
	switch family {
	case "contact":
		return map[string]any{
			"id": id, "audience_id": "78261eea-8f8b-4381-83c6-79fa7120f1cf", "email": to,
			"first_name": "Ada", "last_name": "Lovelace", "unsubscribed": false,
			"created_at": created, "updated_at": created,
		}
	case "domain":
		return map[string]any{
			"id": id, "name": fmt.Sprintf("mail%d.example.com", seq), "status": "verified",
			"region": "us-east-1", "created_at": created,
			"records": []map[string]any{{"record": "SPF", "type": "MX", "name": "send", "status": "verified", "ttl": "Auto", "value": "feedback-smtp.us-east-1.amazonses.com", "priority": 10}},
		}
	case "suppression":
		return map[string]any{"email": to, "reason": "bounced", "created_at": created}
	}
	data := map[string]any{
		"email_id": id, "created_at": created, "from": "Acme <onboarding@example.com>",
		"to": []string{to}, "subject": "Sample event " + eventType,
	}
	switch eventType {
	case "email.bounced":
		data["bounce"] = map[string]any{"type": "Permanent", "subType": "Suppressed", "message": "The recipient's email address is on the suppression list."}
	case "email.clicked":
		data["click"] = map[string]any{"ipAddress": "192.0.2.10", "link": "https://example.com/welcome", "timestamp": created, "userAgent": "Mozilla/5.0"}
	case "email.failed":
		data["failed"] = map[string]any{"reason": "reached_daily_quota"}
	case "email.scheduled":
		data["scheduled_at"] = created
	}
	return data
}
