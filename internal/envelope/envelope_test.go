package envelope

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

var bodies = []string{
	`{"type":"email.sent","created_at":"2026-01-01T00:00:00Z","data":{"a":[1,{"b":"}"}]}}`,
	` { "a" : 1 , "b" : [ true , null ] , "c\"d" : "e\\" } `, `{}`, `[]`, `"s"`, `12`, `null`, ``,
	`{"a":1,}`, `{"a":1}x`, "{\"\xff\":\"\xfe\"}", `{"\u0041":-0.5e-3}`, `{"a":{"b":{"c":[[[]]]}}}`,
}

// members is the oracle of Fields: the top level's names (decoded) and raw values by
// encoding/json's Decoder.
func members(body []byte) (names []string, values [][]byte, valid, object bool) {
	if !json.Valid(body) {
		return nil, nil, false, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return nil, nil, true, false
	}
	for dec.More() {
		name, _ := dec.Token()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil && err != io.EOF {
			panic(err)
		}
		names, values = append(names, name.(string)), append(values, raw)
	}
	return names, values, true, true
}

func checkFields(t *testing.T, body []byte) {
	t.Helper()
	var names []string
	var values [][]byte
	valid, object := Fields(body, func(name, value []byte) {
		n, ok := String(name)
		if !ok {
			t.Fatalf("%q: name %q does not decode", body, name)
		}
		names, values = append(names, n), append(values, bytes.Clone(value))
	})
	wantNames, wantValues, wantValid, wantObject := members(body)
	if valid != wantValid || object != wantObject || strings.Join(names, "\x00") != strings.Join(wantNames, "\x00") ||
		len(values) != len(wantValues) {
		t.Fatalf("%q: %v %v %q, want %v %v %q", body, valid, object, names, wantValid, wantObject, wantNames)
	}
	for i := range values {
		if !bytes.Equal(values[i], wantValues[i]) {
			t.Fatalf("%q: value %d is %q, want %q", body, i, values[i], wantValues[i])
		}
	}
}

func TestFields(t *testing.T) {
	for _, b := range bodies {
		checkFields(t, []byte(b))
	}
}

func FuzzFields(f *testing.F) {
	for _, b := range bodies {
		f.Add([]byte(b))
	}
	f.Fuzz(checkFields)
}

// TestNameIs: the names encoding/json would decode into a field tagged "created_at".
func TestNameIs(t *testing.T) {
	for name, want := range map[string]bool{
		`"created_at"`: true, `"CREATED_AT"`: true, `"Created_At"`: true, `"created\u005fat"`: true, `"\u0043reated_at"`: true,
		`"created-at"`: false, `"createdat"`: false, `"created_at "`: false, `"created_a"`: false, "\"created_a\xff\"": false,
		`"created_@t"`: false, `"cre\u0000ted_at"`: false,
	} {
		var got struct {
			V *int `json:"created_at"`
		}
		decodes := json.Unmarshal([]byte("{"+name+":1}"), &got) == nil && got.V != nil
		if NameIs([]byte(name), "created_at") != want || decodes != want {
			t.Errorf("%s: NameIs %v, encoding/json %v, want %v", name, NameIs([]byte(name), "created_at"), decodes, want)
		}
	}
}

func TestString(t *testing.T) {
	for value, want := range map[string]string{`"a"`: "a", `"a\nb"`: "a\nb", `"\u00e9"`: "é", "\"\xff\"": "\ufffd", `""`: ""} {
		if got, ok := String([]byte(value)); !ok || got != want {
			t.Errorf("%s: %q %v, want %q", value, got, ok, want)
		}
	}
	for _, value := range []string{`1`, `null`, `{}`, `"`} {
		if _, ok := String([]byte(value)); ok {
			t.Errorf("%s: decoded as a string", value)
		}
	}
}
