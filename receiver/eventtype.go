package receiver

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// eventType reads the event type from a verified body. It fails with outBodyNotJSON when the
// body is not JSON, and with outNoType when its top level is not an object with a non-empty
// string "type": the name matched case-insensitively, as encoding/json does; of several, the
// last counts, and one that is neither a string nor null makes it outNoType. These are the
// answers of json.Unmarshal into struct{ Type *string } (FuzzEventType holds it to that), at
// about half its cost (BenchmarkEventType): json.Valid checks the syntax, then one pass over
// the top level finds "type", without reflection.
func eventType(body []byte) (typ string, failed outcome, ok bool) {
	if !json.Valid(body) {
		return "", outBodyNotJSON, false
	}
	s := topLevel{b: body}
	s.space()
	if !s.eat('{') {
		return "", outNoType, false // an array, string, number, literal: no field to read
	}
	var raw []byte // the value, quotes included; nil: none (or null)
	for s.space(); !s.eat('}'); s.space() {
		_ = s.eat(',')
		s.space()
		key := s.str()
		s.space()
		_ = s.eat(':')
		s.space()
		start := s.i
		s.value()
		if !isTypeKey(key) {
			continue
		}
		switch v := body[start:s.i]; v[0] {
		case '"':
			raw = v
		case 'n': // null
			raw = nil
		default:
			return "", outNoType, false
		}
	}
	if len(raw) <= 2 { // none, null or ""
		return "", outNoType, false
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), 0, true
	}
	// Escapes or invalid UTF-8: let encoding/json decode them its way.
	if json.Unmarshal(raw, &typ) != nil || typ == "" {
		return "", outNoType, false
	}
	return typ, 0, true
}

// isTypeKey reports whether the raw key (quotes included) names the field "type" the way
// encoding/json matches names: exactly or case-insensitively, after unescaping.
func isTypeKey(key []byte) bool {
	raw := key[1 : len(key)-1]
	if bytes.IndexByte(raw, '\\') >= 0 {
		var decoded string
		if json.Unmarshal(key, &decoded) != nil {
			return false
		}
		raw = []byte(decoded)
	}
	// No other rune folds to t, y, p or e (encoding/json folds with ToUpper(ToLower(r))).
	return bytes.EqualFold(raw, []byte("type"))
}

// topLevel walks a body that json.Valid accepted.
type topLevel struct {
	b []byte
	i int
}

func (s *topLevel) space() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

func (s *topLevel) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str skips the string at s.i and returns it, quotes included.
func (s *topLevel) str() []byte {
	start := s.i
	s.i++ // the opening quote
	for {
		n := bytes.IndexAny(s.b[s.i:], `"\`)
		s.i += n + 1
		if s.b[s.i-1] == '"' {
			return s.b[start:s.i]
		}
		s.i++ // the escaped byte (of \uXXXX the rest are plain)
	}
}

// value skips the value at s.i.
func (s *topLevel) value() {
	depth := 0
	for {
		switch c := s.b[s.i]; c {
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

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
