package testutil

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisClusterKeepsAcknowledgedWrites: a cluster serves every slot; a primary killed with
// SIGKILL and restarted reloads every key it acknowledged (AOF, fsync always) and the cluster is
// whole again.
func TestRedisClusterKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartRedisCluster(t, 3)
	t.Logf("3-node cluster whole after %s", time.Since(start).Round(time.Millisecond))
	if got := len(c.Addrs()); got != 3 || len(c.Primaries()) != 3 || c.ReplicaOf(0) != -1 {
		t.Fatalf("%d nodes, primaries %v, replica of node 0: %d; want 3 primaries without replicas", got, c.Primaries(), c.ReplicaOf(0))
	}
	ctx := context.Background()
	cc := c.Client(t)
	keys := keyPerSlot(t, c.Node(0).Client(t))
	if _, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Set(ctx, k, k, 0)
		}
		return nil
	}); err != nil {
		t.Fatalf("write one key per slot: %v", err)
	}

	victim, err := c.PrimaryFor(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	before := dbSize(t, c.Node(victim))
	c.KillNode(victim)
	if err := c.nodeClient(victim).Ping(ctx).Err(); err == nil {
		t.Fatal("the killed node still answers")
	}
	start = time.Now()
	if err := c.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed primary back, cluster whole after %s", time.Since(start).Round(time.Millisecond))
	if after := dbSize(t, c.Node(victim)); after != before || after < int64(len(keys)/len(c.Primaries())/2) {
		t.Fatalf("restarted node holds %d keys, held %d before the kill", after, before)
	}
	vals, err := readAll(ctx, cc, keys)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	for i, k := range keys {
		if vals[i] != k {
			t.Fatalf("%s = %q after the restart, want %q", k, vals[i], k)
		}
	}
}

// TestRedisClusterWithReplicas: each primary has a replica that holds its writes.
func TestRedisClusterWithReplicas(t *testing.T) {
	t.Parallel()
	c := StartRedisClusterWithReplicas(t, 3)
	ctx := context.Background()
	primaries := c.Primaries()
	if len(c.Addrs()) != 6 || len(primaries) != 3 {
		t.Fatalf("%d nodes with primaries %v; want 6 with 3 primaries", len(c.Addrs()), primaries)
	}
	cc := c.Client(t)
	for _, p := range primaries {
		r := c.ReplicaOf(p)
		if r < 0 || slices.Contains(primaries, r) {
			t.Fatalf("primary %d has replica %d", p, r)
		}
		key, err := c.keyOn(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := cc.Set(ctx, key, "v"+strconv.Itoa(p), 0).Err(); err != nil {
			t.Fatal(err)
		}
		rc := c.Node(r).Client(t)
		Eventually(t, 5*time.Second, "write on the replica", func() error {
			// READONLY lets a replica answer for its primary's slots on this connection.
			var get *redis.StringCmd
			_, err := rc.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.ReadOnly(ctx)
				get = pipe.Get(ctx, key)
				return nil
			})
			if err != nil {
				return err
			}
			if get.Val() != "v"+strconv.Itoa(p) {
				return errors.New("the replica does not have it yet")
			}
			return nil
		})
	}
}

// keyPerSlot returns one key for each of the 16384 slots, found with CLUSTER KEYSLOT.
func keyPerSlot(t *testing.T, node *redis.Client) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, 16384)
	found := 0
	for n := 0; found < len(keys); {
		cmds, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
			for range 20_000 {
				p.ClusterKeySlot(ctx, "key:"+strconv.Itoa(n))
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range cmds {
			slot := cmd.(*redis.IntCmd).Val()
			if keys[slot] == "" {
				keys[slot] = cmd.Args()[2].(string)
				found++
			}
		}
	}
	return keys
}

func dbSize(t *testing.T, r *Redis) int64 {
	t.Helper()
	n, err := r.Client(t).DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readAll(ctx context.Context, cc *redis.ClusterClient, keys []string) ([]string, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	vals := make([]string, len(keys))
	for i, c := range cmds {
		vals[i] = c.Val()
	}
	return vals, err
}
