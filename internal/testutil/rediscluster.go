package testutil

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodeTimeout is the cluster's node timeout: how long a node may not answer before the
// others suspect it. Short, so that a node killed and restarted in a test is taken back within
// seconds (a failed primary is cleared after twice this), and long enough that a slow moment
// of a loaded machine does not look like a failure.
const clusterNodeTimeout = 2 * time.Second

// clusterReadyTimeout bounds the wait for a cluster (or a restarted node) to be whole again.
const clusterReadyTimeout = 30 * time.Second

// RedisCluster is a private Redis Cluster on 127.0.0.1: primaries that share all 16384 slots
// and, optionally, one replica each. Every node appends each write to its AOF and fsyncs it
// before answering, so a node killed and restarted keeps what it acknowledged (unless started
// with other persistence by NewRedisClusterPersisting).
type RedisCluster struct {
	nodes     []*Redis
	primaries int   // how many of the nodes are primaries
	primaryOf []int // per node: index of the primary it replicates; -1 for a primary
	client    *redis.ClusterClient
	direct    []*redis.Client // per node, for checks of one node; not retried, so a check fails fast
}

// StartRedisCluster starts a cluster of n primaries (3 is the least Redis accepts) without
// replicas, whole when it returns, and stops it at cleanup.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	return startCluster(t, n, 0)
}

// StartRedisClusterWithReplicas starts a cluster of n primaries with one replica each (2n
// nodes), whole and with every replica in sync when it returns, and stops it at cleanup.
func StartRedisClusterWithReplicas(t testing.TB, n int) *RedisCluster {
	t.Helper()
	return startCluster(t, n, 1)
}

func startCluster(t testing.TB, primaries, replicas int) *RedisCluster {
	t.Helper()
	c, err := NewRedisCluster(primaries, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewRedisCluster starts a cluster of primaries with replicas replicas each (for TestMain or
// benchmarks); call Close when done.
func NewRedisCluster(primaries, replicas int) (*RedisCluster, error) {
	return NewRedisClusterPersisting(primaries, replicas, PersistDefault)
}

// NewRedisClusterPersisting is NewRedisCluster with nodes that keep their writes as p says,
// for benchmarks that compare a cluster with a standalone server of the same persistence.
// Without an AOF fsynced on every write (p other than PersistDefault or AOFAlways), a node
// killed with KillNode may come back without writes it acknowledged.
func NewRedisClusterPersisting(primaries, replicas int, p Persistence) (*RedisCluster, error) {
	if primaries < 3 || replicas < 0 {
		return nil, fmt.Errorf("a Redis Cluster needs at least 3 primaries, got %d (and %d replicas each)", primaries, replicas)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, fmt.Errorf("redis-cli not found: run 'make redis' (or 'make test', which installs it): %w", err)
	}
	n := primaries * (1 + replicas)
	c := &RedisCluster{primaries: primaries, nodes: make([]*Redis, n), primaryOf: make([]int, n), direct: make([]*redis.Client, n)}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	err := ForEachParallel(n, n, func(i int) (err error) {
		c.nodes[i], err = newRedis(serverOptions{cluster: true, persistence: p})
		return err
	})
	if err != nil {
		return nil, err
	}
	for i, r := range c.nodes {
		c.direct[i] = redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialerRetries: 1})
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w: %s", err, lastLines(string(out), 5))
	}
	c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	if err := c.waitWhole(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Addrs are the nodes' "127.0.0.1:port", in node index order.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Node is node i, to Pause, Resume, Stop or Start it on its own (a restart with Start does not
// wait for the cluster; RestartNode does).
func (c *RedisCluster) Node(i int) *Redis { return c.nodes[i] }

// Primaries are the indexes of the primary nodes.
func (c *RedisCluster) Primaries() []int {
	var out []int
	for i, p := range c.primaryOf {
		if p < 0 {
			out = append(out, i)
		}
	}
	return out
}

// ReplicaOf is the index of the replica of primary, or -1 when it has none.
func (c *RedisCluster) ReplicaOf(primary int) int { return slices.Index(c.primaryOf, primary) }

// PrimaryFor is the index of the primary that owns key's slot.
func (c *RedisCluster) PrimaryFor(ctx context.Context, key string) (int, error) {
	node, err := c.client.MasterForKey(ctx, key)
	if err != nil {
		return -1, err
	}
	if i := slices.Index(c.Addrs(), node.Options().Addr); i >= 0 {
		return i, nil
	}
	return -1, fmt.Errorf("key %q: its primary %s is not a node of this cluster", key, node.Options().Addr)
}

// KillNode kills node i (SIGKILL): what it acknowledged is in its AOF.
func (c *RedisCluster) KillNode(i int) { c.nodes[i].Stop() }

// RestartNode starts node i again on its port and directory, so it reloads its AOF and
// nodes.conf, and returns once the cluster is whole again. A primary takes at least 2 s:
// Redis keeps a rebooted primary out of service that long.
func (c *RedisCluster) RestartNode(i int) error {
	if err := c.nodes[i].Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	return c.waitWhole(ctx)
}

// Client returns a cluster client for the nodes, closed at test cleanup.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Close stops every node and removes their directories.
func (c *RedisCluster) Close() {
	if c.client != nil {
		_ = c.client.Close()
	}
	for _, d := range c.direct {
		if d != nil {
			_ = d.Close()
		}
	}
	for _, n := range c.nodes {
		if n != nil {
			n.Close()
		}
	}
}

// readRoles learns from each node's own line in CLUSTER NODES which node it replicates. Each
// node's word on itself counts: the others learn of a new replica by gossip, later.
func (c *RedisCluster) readRoles(ctx context.Context) error {
	ids := make([]string, len(c.nodes))       // per node: its id
	primaryID := make([]string, len(c.nodes)) // per node: the id of its primary, "-" for a primary
	for i := range c.nodes {
		nodes, err := c.nodeClient(i).ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %d: cluster nodes: %w", i, err)
		}
		for line := range strings.Lines(nodes) {
			// <id> <ip:port@cport> <flags> <primary id or -> …
			if f := strings.Fields(line); len(f) >= 4 && slices.Contains(strings.Split(f[2], ","), "myself") {
				ids[i], primaryID[i] = f[0], f[3]
			}
		}
		if ids[i] == "" {
			return fmt.Errorf("node %d: cluster nodes has no line of its own", i)
		}
	}
	primaries := 0
	for i, id := range primaryID {
		c.primaryOf[i] = -1
		if id == "-" {
			primaries++
		} else if c.primaryOf[i] = slices.Index(ids, id); c.primaryOf[i] < 0 {
			return fmt.Errorf("node %d replicates a node that is not ours", i)
		}
	}
	if primaries != c.primaries {
		return fmt.Errorf("%d of %d nodes are primaries, want %d", primaries, len(c.nodes), c.primaries)
	}
	return nil
}

// waitWhole polls until every node knows its role, says the cluster is ok with all slots
// served and knows every node, and every primary's replica acknowledges its writes.
func (c *RedisCluster) waitWhole(ctx context.Context) error {
	var last error
	for {
		if last = c.whole(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster not whole: %w", last)
		case <-time.After(pollInterval): // poll interval, not synchronisation
		}
	}
}

func (c *RedisCluster) whole(ctx context.Context) error {
	if err := c.readRoles(ctx); err != nil {
		return err
	}
	want := map[string]string{"cluster_state": "ok", "cluster_slots_ok": "16384", "cluster_known_nodes": strconv.Itoa(len(c.nodes))}
	for i := range c.nodes {
		info, err := c.nodeClient(i).ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		for k, v := range want {
			if got := infoField(info, k); got != v {
				return fmt.Errorf("node %d: %s is %q, want %q", i, k, got, v)
			}
		}
	}
	for _, p := range c.Primaries() {
		if r := c.ReplicaOf(p); r >= 0 {
			if err := c.replicaAcks(ctx, p, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// replicaAcks checks that primary p counts replica r as online and that a WAIT after a fresh
// write on p counts it. (After a sync a primary holds its write stream back until the
// replica's first acknowledgement; until then a WAIT cannot count it.)
func (c *RedisCluster) replicaAcks(ctx context.Context, p, r int) error {
	pc := c.nodeClient(p)
	info, err := pc.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("node %d: %w", p, err)
	}
	if !strings.Contains(info, ",port="+strconv.Itoa(c.nodes[r].Port)+",state=online,") {
		return fmt.Errorf("replica %d not online at primary %d yet", r, p)
	}
	key, err := c.keyOn(ctx, p)
	if err != nil {
		return err
	}
	var acked *redis.Cmd
	_, err = pc.Pipelined(ctx, func(pipe redis.Pipeliner) error { // one connection: the WAIT covers the write
		pipe.Incr(ctx, key)
		acked = pipe.Do(ctx, "wait", 1, 100)
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %d: %w", p, err)
	}
	if n, _ := acked.Int(); n < 1 {
		return fmt.Errorf("replica %d does not acknowledge the writes of primary %d yet", r, p)
	}
	return nil
}

// keyOn returns a key in a slot of primary p: "testutil:probe:<n>" for the first n that hashes
// there.
func (c *RedisCluster) keyOn(ctx context.Context, p int) (string, error) {
	for n := range 100_000 {
		key := "testutil:probe:" + strconv.Itoa(n)
		if i, err := c.PrimaryFor(ctx, key); err != nil {
			return "", err
		} else if i == p {
			return key, nil
		}
	}
	return "", errors.New("no probe key hashes to primary " + strconv.Itoa(p))
}

// nodeClient is a client of node i alone, for the cluster's own checks.
func (c *RedisCluster) nodeClient(i int) *redis.Client { return c.direct[i] }

func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == key {
			return v
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
