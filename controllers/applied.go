package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// appliedMemo remembers, per webhook and child, a hash of the last apply request sent and the
// resourceVersion the child had right after it. While the new request hashes the same and the
// cached child still has that resourceVersion, applying again would be a no-op, so the
// reconciler skips the request: periodic refreshes cost no API calls. Any change to the
// request (spec, operator flags, Secret digests) or to the child (edit, deletion, status
// update) sends it again.
type appliedMemo struct {
	mu    sync.Mutex
	state map[types.NamespacedName]map[string]appliedChild // webhook → childKey → last apply
}

type appliedChild struct {
	hash string // requestHash of the apply body
	rv   string // resourceVersion right after the apply
}

func newAppliedMemo() *appliedMemo {
	return &appliedMemo{state: map[types.NamespacedName]map[string]appliedChild{}}
}

// requestHash identifies an apply request body (encoding/json sorts map keys).
func requestHash(u *unstructured.Unstructured) string {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return "" // never equal to a remembered hash: the child is applied
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// unchanged reports whether obj was last applied with this request hash and the cache still
// holds it at the resourceVersion that apply returned.
func (m *appliedMemo) unchanged(ctx context.Context, c client.Reader, webhook types.NamespacedName, obj client.Object, hash string) bool {
	m.mu.Lock()
	last, ok := m.state[webhook][childKey(obj)]
	m.mu.Unlock()
	if !ok || hash == "" || last.hash != hash || last.rv == "" {
		return false
	}
	got := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
		return false
	}
	return got.GetResourceVersion() == last.rv
}

func (m *appliedMemo) remember(webhook types.NamespacedName, obj client.Object, hash, rv string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state[webhook] == nil {
		m.state[webhook] = map[string]appliedChild{}
	}
	m.state[webhook][childKey(obj)] = appliedChild{hash: hash, rv: rv}
}

func (m *appliedMemo) forgetChild(webhook types.NamespacedName, obj client.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.state[webhook], childKey(obj))
}

func (m *appliedMemo) forget(webhook types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.state, webhook)
}
