package testutil

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// Median is the median of v (0 for none); benchmarks report it over alternating rounds.
func Median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	switch {
	case len(s) == 0:
		return 0
	case len(s)%2 == 1:
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Spread is "median [min-max]" of v with the given number of decimals and unit after each
// figure ("" for ratios, "ms" for latencies).
func Spread(v []float64, decimals int, unit string) string {
	if len(v) == 0 {
		return "-"
	}
	f := func(x float64) string { return fmt.Sprintf("%.*f", decimals, x) }
	return f(Median(v)) + unit + " [" + f(slices.Min(v)) + "-" + f(slices.Max(v)) + "]"
}

// LoadAverage is the 1, 5 and 15 minute load averages of the machine, for benchmark output
// (how busy the shared cores were), or "n/a".
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "n/a"
}
