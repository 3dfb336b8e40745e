package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// appliedMemo remembers, per webhook, the spec generation (and the render inputs from outside
// the spec, such as the Redis secrets digest) last applied and the resourceVersion
// each child had right after its apply. While the generation is the same and the cached child
// still has that resourceVersion, applying it again would be a no-op, so the reconciler skips
// the request: periodic status refreshes cost no API calls. Any change to a child (edit,
// deletion, status update) gives it a new resourceVersion, and that child is applied again.
type appliedMemo struct {
	mu    sync.Mutex
	state map[types.NamespacedName]appliedState
}

type appliedState struct {
	uid        types.UID
	generation int64
	inputs     render.Options
	versions   map[string]string // childKey → resourceVersion after apply
}

func newAppliedMemo() *appliedMemo {
	return &appliedMemo{state: map[types.NamespacedName]appliedState{}}
}

// versionsFor returns the recorded versions when they belong to rw's current generation and
// the same render inputs.
func (m *appliedMemo) versionsFor(rw *v1alpha1.ResendWebhook, inputs render.Options) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.state[client.ObjectKeyFromObject(rw)]
	if !ok || s.uid != rw.UID || s.generation != rw.Generation || s.inputs != inputs {
		return nil
	}
	return s.versions
}

func (m *appliedMemo) remember(rw *v1alpha1.ResendWebhook, inputs render.Options, versions map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state[client.ObjectKeyFromObject(rw)] = appliedState{uid: rw.UID, generation: rw.Generation, inputs: inputs, versions: versions}
}

func (m *appliedMemo) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.state, key)
}

// unchanged reports whether the cache holds obj at resourceVersion rv.
func unchanged(ctx context.Context, c client.Reader, obj client.Object, rv string) bool {
	if rv == "" {
		return false
	}
	got := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
		return false
	}
	return got.GetResourceVersion() == rv
}
