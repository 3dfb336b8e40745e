package render_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/receiver"
	"github.com/resend-webhook-operator/resend-webhook-operator/worker"
)

// TestArgsAreFlagsTheBinariesDefine parses the rendered command lines with the real receiver and
// worker flag sets: a trailing --help makes them stop after parsing, so any flag the controller
// renders but a binary does not define fails here instead of in a crash-looping pod.
func TestArgsAreFlagsTheBinariesDefine(t *testing.T) {
	withReplicas := Full()
	withReplicas.Spec.Queue.Redis.MinReplicas = new(int32(2))
	withReplicas.Spec.Queue.Redis.ReplicaTimeout = &metav1.Duration{Duration: 250 * time.Millisecond}
	replicaArgs := render.ReceiverArgs(withReplicas)
	for _, want := range []string{"--min-replicas=2", "--replica-timeout=250ms"} {
		if !slices.Contains(replicaArgs, want) {
			t.Errorf("receiver args %q lack %s", replicaArgs, want)
		}
	}
	if args := render.ReceiverArgs(Minimal()); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--min-replicas") }) {
		t.Errorf("receiver args %q ask for replica acknowledgement the spec does not", args)
	}
	sharded := shardedOnCluster()
	for _, args := range [][]string{render.ReceiverArgs(sharded), render.WorkerArgs(sharded)} {
		for _, want := range []string{"--shards=3", "--previous-shards=1,4", "--redis-cluster-addrs=n1.redis:6379,n2.redis:6379"} {
			if !slices.Contains(args, want) {
				t.Errorf("args %q lack %s", args, want)
			}
		}
	}
	for _, args := range [][]string{render.ReceiverArgs(Full()), render.WorkerArgs(Full())} {
		if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "shards") || strings.Contains(a, "cluster") }) {
			t.Errorf("args %q shard or use a cluster the spec does not ask for", args)
		}
	}
	for _, tc := range []struct {
		cmd  cli.Command
		args []string
	}{
		{receiver.Command, render.ReceiverArgs(sharded)},
		{worker.Command, render.WorkerArgs(sharded)},
		{receiver.Command, render.ReceiverArgs(Full())},
		{receiver.Command, render.ReceiverArgs(Minimal())},
		{receiver.Command, replicaArgs},
		{worker.Command, render.WorkerArgs(Full())},
		{worker.Command, render.WorkerArgs(breakerDisabled())},
	} {
		if tc.args[0] != tc.cmd.Name {
			t.Fatalf("args start with %q, want subcommand %q", tc.args[0], tc.cmd.Name)
		}
		var out bytes.Buffer
		args := append(append([]string{}, tc.args[1:]...), "--help")
		err := tc.cmd.Run(context.Background(), args, func(string) string { return "" }, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s rejects the rendered args %q: %v", tc.cmd.Name, tc.args, err)
		}
	}
}

// shardedOnCluster is Full on a Redis Cluster with 3 shards, 1 and 4 still draining.
func shardedOnCluster() *v1alpha1.ResendWebhook {
	rw := Full()
	rw.Spec.Queue.Redis.URL = "redis://unused:6379"
	rw.Spec.Queue.Redis.Sentinel = nil
	rw.Spec.Queue.Redis.Cluster = &v1alpha1.RedisClusterSpec{Addrs: []string{"n1.redis:6379", "n2.redis:6379"}}
	rw.Spec.Queue.Shards = new(int32(3))
	rw.Status.Queue.PreviousShards = []int32{4, 1}
	return rw
}

// breakerDisabled is Full with the circuit breaker turned off (rendered as threshold 0).
func breakerDisabled() *v1alpha1.ResendWebhook {
	rw := Full()
	rw.Spec.Worker.CircuitBreaker.Enabled = new(false)
	return rw
}

func TestWorkerArgsBreaker(t *testing.T) {
	args := strings.Join(render.WorkerArgs(Full()), " ")
	for _, want := range []string{"--breaker-threshold=3", "--breaker-probe-interval=1s", "--breaker-max-probe-interval=30s", "--breaker-max-hold=2h0m0s", "--dedup-window=48h0m0s"} {
		if !strings.Contains(args, want) {
			t.Errorf("worker args lack %s: %s", want, args)
		}
	}
	if args := strings.Join(render.WorkerArgs(breakerDisabled()), " "); !strings.Contains(args, "--breaker-threshold=0") || strings.Contains(args, "--breaker-max-hold") {
		t.Errorf("disabled breaker renders %s, want only --breaker-threshold=0", args)
	}
}
