// Package envelope reads the top level of a JSON webhook body (Resend's envelope: type,
// created_at, data) the way encoding/json would decode it into a struct, without reflection:
// the receiver needs "type" of every request, the worker "created_at" and "data" of every
// event, and json.Unmarshal of the whole body cost more than the rest of the worker's own work
// and a fifth of the receiver handler's. A syntax check as strict as json.Valid, then one pass
// over the top level.
package envelope

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Fields checks that body is JSON and, when its top level is an object, calls field with the
// raw name (quotes included) and raw value (without surrounding space) of each member, in
// order. It reports whether body is JSON, and whether its top level is an object: for an
// array, string, number or literal there are no fields (encoding/json then reports a type
// error, or for null does nothing).
func Fields(body []byte, field func(name, value []byte)) (isJSON, object bool) {
	if !valid(body) {
		return false, false
	}
	s := scanner{b: body}
	s.space()
	if !s.eat('{') {
		return true, false
	}
	for s.space(); !s.eat('}'); s.space() {
		_ = s.eat(',')
		s.space()
		name := s.str()
		s.space()
		_ = s.eat(':')
		s.space()
		start := s.i
		s.value()
		field(name, body[start:s.i])
	}
	return true, true
}

// NameIs reports whether the raw name (quotes included) is want the way encoding/json matches
// a field's name: exactly or case-insensitively, after unescaping. want must be lower-case
// ASCII letters and '_' without 'i', 'k' or 's' (no other rune folds to those: encoding/json
// folds with unicode.ToUpper(unicode.ToLower(r)), under which 'İ' and 'ı' fold to 'I', 'K'
// (Kelvin) to 'K' and 'ſ' to 'S').
func NameIs(name []byte, want string) bool {
	raw := name[1 : len(name)-1]
	if bytes.IndexByte(raw, '\\') >= 0 {
		var decoded string
		if json.Unmarshal(name, &decoded) != nil {
			return false
		}
		raw = []byte(decoded)
	}
	if len(raw) != len(want) {
		return false
	}
	for i := range len(raw) {
		if c := raw[i] | 0x20; c != want[i] && raw[i] != want[i] { // ASCII lower-casing
			return false
		}
	}
	return true
}

// String decodes the raw JSON string value (quotes included) as encoding/json does, invalid
// UTF-8 replaced by U+FFFD. It reports false for any other value.
func String(value []byte) (string, bool) {
	if len(value) < 2 || value[0] != '"' {
		return "", false
	}
	if inner := value[1 : len(value)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string // escapes or invalid UTF-8: let encoding/json decode them its way
	if json.Unmarshal(value, &s) != nil {
		return "", false
	}
	return s, true
}

// scanner walks a body that valid accepted.
type scanner struct {
	b []byte
	i int
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) space() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str skips the string at s.i and returns it, quotes included.
func (s *scanner) str() []byte {
	start := s.i
	for {
		s.i++
		s.i += bytes.IndexByte(s.b[s.i:], '"')
		escapes := 0 // a quote after an odd number of backslashes is part of the string
		for s.b[s.i-1-escapes] == '\\' {
			escapes++
		}
		if escapes%2 == 0 {
			s.i++
			return s.b[start:s.i]
		}
	}
}

// value skips the value at s.i.
func (s *scanner) value() {
	depth := 0
	for {
		switch s.b[s.i] {
		case '"':
			s.str()
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			depth--
			s.i++
		default: // a number or literal: up to the next delimiter
			for s.i < len(s.b) && !isSpace(s.b[s.i]) && s.b[s.i] != ',' && s.b[s.i] != '}' && s.b[s.i] != ']' {
				s.i++
			}
		}
		if depth == 0 {
			return
		}
		for s.i < len(s.b) && (isSpace(s.b[s.i]) || s.b[s.i] == ',' || s.b[s.i] == ':') {
			s.i++
		}
	}
}
