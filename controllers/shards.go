package controllers

import (
	"context"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// recordShardChange writes a change of spec.queue.shards to the status before anything is
// rendered from it: the old count joins status.queue.previousShards, so receivers keep looking
// re-deliveries up in the old shards and workers keep draining them (render.Layout), and a
// crash between this write and the rollout cannot forget the old queues. On success rw holds
// the written status.
func (r *Reconciler) recordShardChange(ctx context.Context, rw *v1alpha1.ResendWebhook) error {
	want := int32(rw.Spec.Queue.EffectiveShards())
	previous, changed := shardChange(rw.Status.Queue, want)
	if !changed {
		return nil
	}
	updated := rw.DeepCopy()
	updated.Status.Queue.Shards = want
	updated.Status.Queue.PreviousShards = previous
	if err := r.client.Status().Update(ctx, updated); err != nil {
		if apierrors.IsConflict(err) {
			return errRetry
		}
		return err
	}
	*rw = *updated
	return nil
}

// shardChange says whether a webhook whose status is st moves to want shards, and the previous
// counts then. A status without shards is of a webhook that has had one queue so far (new, or
// from before sharding): a first layout of one shard needs no record.
func shardChange(st v1alpha1.QueueStatus, want int32) ([]int32, bool) {
	current := max(st.Shards, 1)
	if current == want {
		return st.PreviousShards, false
	}
	previous := slices.DeleteFunc(slices.Clone(st.PreviousShards), func(p int32) bool { return p == want || p == current })
	previous = append(previous, current)
	slices.Sort(previous)
	return previous, true
}
