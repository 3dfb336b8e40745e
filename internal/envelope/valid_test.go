package envelope

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e`, `1E+5`, `1e-05`, `-1.25E3`, `2e`, `1ee5`, `0x10`, `+1`,
	`true`, `tru`, `truex`, `false `, `null`, `nul`, `"`, `""`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, `"\/"`,
	"\"\x1f\"", "\"\x7f\"", "\"\xff\xfe\"", "\"a\tb\"", `[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `[[1],[2,[3]]]`, `{}`, `{ }`,
	`{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{1:2}`, `{"a":1}}`, `{"a":[{"b":null}]}`, ` {"a" : "b" } `, "\t\n\r[1]\r\n",
	"\u00a0[1]", `[1]x`, `[1] [2]`, `{"a":1,"a":2}`,
}

// TestValidMatchesJSONValid: valid answers as json.Valid, including at the nesting limit.
func TestValidMatchesJSONValid(t *testing.T) {
	cases := validCases
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		cases = append(cases, strings.Repeat("[", depth)+strings.Repeat("]", depth),
			strings.Repeat(`{"a":`, depth)+"1"+strings.Repeat("}", depth))
	}
	for _, c := range cases {
		if got, want := valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("%.40q: valid %v, json.Valid %v", c, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Errorf("%q: valid %v, json.Valid %v", b, got, want)
		}
	})
}

// BenchmarkValid compares valid with json.Valid on a 1 KB webhook body.
func BenchmarkValid(b *testing.B) {
	body := []byte(`{"type":"email.delivered","created_at":"2026-11-28T15:00:00.000Z","data":{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example","pad":"` + strings.Repeat("x", 800) + `"}}`)
	for name, check := range map[string]func([]byte) bool{"valid": valid, "json.Valid": json.Valid} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if !check(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
