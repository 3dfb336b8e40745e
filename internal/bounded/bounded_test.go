package bounded

import "testing"

func TestCut(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc~"},
		{"ééé", 3, "é~"}, // é is two bytes: the second é would be split
		{"ééé", 1, "~"},
		{"abc", 0, "~"},
	} {
		if got := Cut(c.in, c.n, "~"); got != c.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestText(t *testing.T) {
	if got := Text("a\nb\x00cé\x7f", 100); got != "a b cé " {
		t.Errorf("control characters: got %q", got)
	}
	if got := Text("a\u0085b\u2028c\u2029d", 100); got != "a b c d" {
		t.Errorf("C1 and Unicode line breaks: got %q", got)
	}
	if got := Text("a\xffb", 100); got != "a?b" {
		t.Errorf("invalid UTF-8: got %q", got)
	}
	if got := Text("ééé", 3); got != "é…" {
		t.Errorf("cut: got %q", got)
	}
}
