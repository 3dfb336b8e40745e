package testutil

import "testing"

func TestMedianAndSpread(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd: %v", m)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even: %v", m)
	}
	if m := Median(nil); m != 0 {
		t.Errorf("none: %v", m)
	}
	if s := Spread([]float64{1.234, 0.9, 1.5}, 2, ""); s != "1.23 [0.90-1.50]" {
		t.Errorf("spread: %q", s)
	}
	if s := Spread([]float64{2}, 1, "ms"); s != "2.0ms [2.0-2.0]" {
		t.Errorf("spread ms: %q", s)
	}
	if s := Spread(nil, 2, ""); s != "-" {
		t.Errorf("spread of none: %q", s)
	}
}
