// Package bounded shortens text that comes from elsewhere (the network, Redis, a user's object)
// before it goes into a condition, an Event, a log line or a stored record.
package bounded

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Cut returns s when it has at most n bytes, else its longest prefix of at most n bytes that
// does not split a UTF-8 sequence, followed by tail.
func Cut(s string, n int, tail string) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + tail
}

// Text makes s fit on one line of at most n bytes (plus an ellipsis when cut): invalid UTF-8
// becomes '?', and control characters (C0, DEL, C1) and the Unicode line and paragraph
// separators become spaces.
func Text(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	return Cut(s, n, "…")
}
