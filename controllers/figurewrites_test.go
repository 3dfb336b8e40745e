package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Figure-only writes: at most one per webhook per interval, and within the global budget.
func TestFigureWritesBudget(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	f := newFigureWrites(time.Minute, 2) // 2 writes/s, burst 2
	f.now = func() time.Time { return now }
	a, b, c := key("a"), key("b"), key("c")
	if !f.allow(a) {
		t.Fatal("first write of a refused")
	}
	f.wrote(a)
	if f.allow(a) {
		t.Fatal("a wrote again within its interval")
	}
	if !f.allow(b) {
		t.Fatal("b refused while the budget has a token")
	}
	f.wrote(b)
	if f.allow(c) {
		t.Fatal("c allowed beyond the burst of 2")
	}
	now = now.Add(500 * time.Millisecond) // one token back
	if !f.allow(c) {
		t.Fatal("c refused after the bucket refilled")
	}
	f.wrote(c)
	now = now.Add(time.Minute)
	if !f.allow(a) {
		t.Fatal("a refused after its interval")
	}
	f.forget(b)
	if _, ok := f.last[b]; ok {
		t.Fatal("forget kept b")
	}
}

func key(name string) types.NamespacedName { return types.NamespacedName{Namespace: "n", Name: name} }
