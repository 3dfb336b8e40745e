package receiver

import "github.com/resend-webhook-operator/resend-webhook-operator/internal/envelope"

// eventType reads the event type from a verified body. It fails with outBodyNotJSON when the
// body is not JSON, and with outNoType when its top level is not an object with a non-empty
// string "type": the name matched case-insensitively, as encoding/json does; of several, the
// last counts, and one that is neither a string nor null makes it outNoType. These are the
// answers of json.Unmarshal into struct{ Type *string } (FuzzEventType holds it to that), at
// a sixth of its cost (BenchmarkEventType).
func eventType(body []byte) (typ string, failed outcome, ok bool) {
	var last []byte // the last "type" value; nil: none, or null
	wrongType := false
	valid, object := envelope.Fields(body, func(name, value []byte) {
		if !envelope.NameIs(name, "type") {
			return
		}
		switch value[0] {
		case '"':
			last = value
		case 'n': // null
			last = nil
		default:
			wrongType = true
		}
	})
	switch {
	case !valid:
		return "", outBodyNotJSON, false
	case !object, wrongType:
		return "", outNoType, false
	}
	if typ, _ = envelope.String(last); typ == "" {
		return "", outNoType, false
	}
	return typ, 0, true
}
