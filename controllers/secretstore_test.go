package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// A kept Secret value lives as long as some webhook's last reconcile read it.
func TestSecretStoreKeepsValuesWhileReferenced(t *testing.T) {
	s := newSecretStore(nil, nil)
	shared, own := key("shared"), key("own")
	put := func(k types.NamespacedName) {
		s.kept[k] = &keptSecret{uid: "u", rv: "1", fetched: map[string]bool{"k": true}, data: map[string][]byte{"k": []byte("v")}, users: map[types.NamespacedName]struct{}{}}
	}
	put(shared)
	put(own)
	a, b := key("webhook-a"), key("webhook-b")
	s.setReadBy(a, []types.NamespacedName{shared, own})
	s.setReadBy(b, []types.NamespacedName{shared})
	if s.size() != 2 {
		t.Fatalf("%d kept, want 2", s.size())
	}
	s.setReadBy(a, []types.NamespacedName{shared}) // a no longer references own
	if _, ok := s.kept[own]; ok || s.size() != 1 {
		t.Fatalf("a Secret no webhook reads is still kept (%d kept)", s.size())
	}
	s.forget(a)
	if s.size() != 1 {
		t.Fatal("b's Secret dropped when a went")
	}
	s.forget(b)
	if s.size() != 0 || len(s.readBy) != 0 {
		t.Fatalf("kept %d, readBy %d after every webhook went", s.size(), len(s.readBy))
	}
	if allFetched(map[string]bool{"a": true}, []string{"a", "b"}) || !allFetched(map[string]bool{"a": true, "b": true}, []string{"b"}) {
		t.Fatal("allFetched")
	}
}
