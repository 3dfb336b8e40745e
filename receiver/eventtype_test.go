package receiver

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// eventTypeByUnmarshal is what eventType replaced, and the oracle it is held to.
func eventTypeByUnmarshal(body []byte) (string, outcome, bool) {
	var event struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(body, &event); err != nil {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return "", outNoType, false
		}
		return "", outBodyNotJSON, false
	}
	if event.Type == nil || *event.Type == "" {
		return "", outNoType, false
	}
	return *event.Type, 0, true
}

var eventTypeCases = []string{
	`{"type":"email.sent"}`,
	` {"created_at":"x","data":{"type":"nested","a":[1,{"type":2}]},"type":"email.bounced"} `,
	`{"TYPE":"upper"}`, `{"Type":"a","type":"b"}`, `{"type":"a","type":null}`, `{"type":null,"type":"b"}`,
	`{"type":"a","Type":5}`, `{"type":5,"type":"a"}`, `{"type":{"x":"y"}}`, `{"type":["a"]}`, `{"type":true}`,
	`{"type":""}`, `{"type":"email\u002esent"}`, `{"\u0074ype":"escaped.key"}`, `{"typ\"e":"x"}`,
	"{\"type\":\"bad\xffutf8\"}", "{\"typ\xffe\":\"x\"}", `{"type":"a\"b"}`, `{"type":"a\\"}`,
	`{"ty":"x","types":"y"}`, `{}`, `[]`, `["type"]`, `"type"`, `null`, `12`, `true`,
	`{"type":"a"`, `{"type":"a"}x`, `{"type":"a",}`, ``, ` `, `{"type":01}`, `{"a":-1.5e+3,"type":"n"}`,
	`{"a":[[],{}],"b":[{"c":[true,false,null]}],"type":"deep"}`, `{"type" : "spaced" , "x" : 1 }`,
	"{\"type\":\"\u212ay\"}", "{\"\u212aype\":\"kelvin\"}", "{\"\u017fype\":\"long s\"}",
}

// TestEventTypeMatchesUnmarshal: the hand-written scan answers as json.Unmarshal did.
func TestEventTypeMatchesUnmarshal(t *testing.T) {
	for _, body := range append(eventTypeCases, strings.Repeat("[", 10001)+strings.Repeat("]", 10001)) {
		checkEventType(t, []byte(body))
	}
}

// FuzzEventType holds eventType to json.Unmarshal on any body.
func FuzzEventType(f *testing.F) {
	for _, body := range eventTypeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkEventType(t, body) })
}

func checkEventType(t *testing.T, body []byte) {
	t.Helper()
	typ, failed, ok := eventType(body)
	wantTyp, wantFailed, wantOK := eventTypeByUnmarshal(body)
	if typ != wantTyp || failed != wantFailed || ok != wantOK {
		t.Errorf("%q: got %q %s %v, json.Unmarshal says %q %s %v", body, typ, failed.reason(), ok, wantTyp, wantFailed.reason(), wantOK)
	}
}

// BenchmarkEventType compares eventType with the json.Unmarshal it replaced on the 1 KB body
// of the receiver benchmark.
func BenchmarkEventType(b *testing.B) {
	body := benchBody()
	for name, read := range map[string]func([]byte) (string, outcome, bool){"scan": eventType, "unmarshal": eventTypeByUnmarshal} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := read(body); !ok {
					b.Fatal("no type")
				}
			}
		})
	}
}
