package testutil

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestForEachParallel(t *testing.T) {
	var seen [1000]atomic.Int32
	if err := ForEachParallel(len(seen), 8, func(i int) error { seen[i].Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("index %d ran %d times, want 1", i, n)
		}
	}
	boom := errors.New("boom")
	var calls atomic.Int32
	err := ForEachParallel(1000, 4, func(i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}
