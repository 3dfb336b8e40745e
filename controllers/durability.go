package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// durabilityCache holds the last QueueDurable reading of one Redis. The settings change rarely,
// so they are read at most once per interval; a failed reading is not kept (the next reconcile
// tries again) and does not replace a good one.
type durabilityCache struct {
	mu   sync.Mutex
	cond *metav1.Condition
	at   time.Time
}

// get returns the cached reading while it is younger than maxAge, else reads Redis.
func (d *durabilityCache) get(ctx context.Context, c redis.UniversalClient, maxAge time.Duration) metav1.Condition {
	d.mu.Lock()
	if d.cond != nil && time.Since(d.at) < maxAge {
		defer d.mu.Unlock()
		return *d.cond
	}
	d.mu.Unlock()
	cond := readDurability(ctx, c)
	d.mu.Lock()
	defer d.mu.Unlock()
	if cond.Status == metav1.ConditionUnknown {
		if d.cond != nil {
			return *d.cond
		}
		return cond
	}
	d.cond, d.at = &cond, time.Now()
	return cond
}

// last is the last good reading, or Unknown for the reason given.
func (d *durabilityCache) last(why string) metav1.Condition {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cond != nil {
		return *d.cond
	}
	return durabilityUnknown(why)
}

func durabilityUnknown(why string) metav1.Condition {
	return metav1.Condition{Type: v1alpha1.ConditionQueueDurable, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonDurabilityUnknown,
		Message: "cannot tell whether Redis keeps acknowledged events: " + why}
}

// durabilityParams are the CONFIG parameters QueueDurable is decided on.
var durabilityParams = []string{"appendonly", "appendfsync", "maxmemory-policy", "save"}

// readDurability reads Redis' persistence and eviction settings: of every primary of a Redis
// Cluster, else of the one server.
func readDurability(ctx context.Context, c redis.UniversalClient) metav1.Condition {
	if cluster, ok := c.(*redis.ClusterClient); ok {
		return clusterDurability(ctx, cluster)
	}
	return nodeDurability(ctx, c)
}

// clusterDurability is the reading of the least durable primary: a shard's events are only as
// safe as the node that holds them. Asking one node would report whichever the client picked,
// and the condition would change from reconcile to reconcile on a cluster set up unevenly.
func clusterDurability(ctx context.Context, c *redis.ClusterClient) metav1.Condition {
	type reading struct {
		addr string
		cond metav1.Condition
	}
	var mu sync.Mutex
	var readings []reading
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		r := reading{addr: node.Options().Addr, cond: nodeDurability(ctx, node)}
		mu.Lock()
		defer mu.Unlock()
		readings = append(readings, r)
		return nil
	})
	switch {
	case err != nil:
		return durabilityUnknown("cannot list the cluster's primaries: " + redisErrorClass(err))
	case len(readings) == 0:
		return durabilityUnknown("the cluster has no primary")
	}
	slices.SortFunc(readings, func(a, b reading) int {
		return cmp.Or(cmp.Compare(durabilityRank(a.cond), durabilityRank(b.cond)), strings.Compare(a.addr, b.addr))
	})
	weakest := readings[0].cond
	if !slices.ContainsFunc(readings, func(r reading) bool { return r.cond.Message != weakest.Message || r.cond.Status != weakest.Status }) {
		weakest.Message = fmt.Sprintf("all %d primaries: %s", len(readings), weakest.Message)
	} else {
		weakest.Message = fmt.Sprintf("primary %s, the least durable of %d: %s", readings[0].addr, len(readings), weakest.Message)
	}
	return weakest
}

// durabilityRank orders readings from the least durable: False, Unknown, then True by what its
// AOF fsync policy can lose (aofByLoss).
func durabilityRank(c metav1.Condition) int {
	switch c.Status {
	case metav1.ConditionFalse:
		return 0
	case metav1.ConditionTrue:
		if i := slices.IndexFunc(aofByLoss, func(a aofPolicy) bool { return a.message == c.Message }); i >= 0 {
			return 2 + i
		}
		return 2 + len(aofByLoss)
	}
	return 1
}

// nodeDurability reads one server's persistence and eviction settings with CONFIG GET, or from
// INFO where CONFIG is denied (managed Redis services often rename or forbid it).
func nodeDurability(ctx context.Context, c redis.UniversalClient) metav1.Condition {
	cmds := make([]*redis.MapStringStringCmd, len(durabilityParams))
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, param := range durabilityParams {
			cmds[i] = p.ConfigGet(ctx, param)
		}
		return nil
	})
	if err == nil {
		config := map[string]string{}
		for _, cmd := range cmds {
			for k, v := range cmd.Val() {
				config[k] = v
			}
		}
		if _, ok := config["appendonly"]; ok {
			return durabilityFromConfig(config)
		}
	}
	persistence, err := c.Info(ctx, "persistence").Result()
	if err != nil {
		return durabilityUnknown("CONFIG GET and INFO persistence failed: " + redisErrorClass(err))
	}
	memory, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return durabilityUnknown("CONFIG GET and INFO memory failed: " + redisErrorClass(err))
	}
	info := parseInfo(persistence)
	for k, v := range parseInfo(memory) {
		info[k] = v
	}
	return durabilityFromInfo(info)
}

// durabilityFromConfig decides QueueDurable from CONFIG GET values. Eviction comes first: it
// loses events without any crash.
func durabilityFromConfig(config map[string]string) metav1.Condition {
	if c := evictionCondition(config["maxmemory-policy"]); c != nil {
		return *c
	}
	if config["appendonly"] == "yes" {
		return aofDurable(config["appendfsync"])
	}
	if save := strings.TrimSpace(config["save"]); save != "" {
		return *falseCond(v1alpha1.ConditionQueueDurable, v1alpha1.ReasonSnapshotsOnly,
			fmt.Sprintf("appendonly no, RDB snapshots only (save %q): events acknowledged since the last snapshot are lost when Redis crashes or restarts; set appendonly yes", save))
	}
	return noPersistence("appendonly no and no save schedule")
}

// durabilityFromInfo decides QueueDurable from INFO persistence and memory fields (the fsync
// policy and the snapshot schedule are not in INFO).
func durabilityFromInfo(info map[string]string) metav1.Condition {
	if c := evictionCondition(info["maxmemory_policy"]); c != nil {
		return *c
	}
	switch info["aof_enabled"] {
	case "1":
		return aofDurable("")
	case "0":
		if n, err := strconv.Atoi(info["rdb_saves"]); err == nil && n > 0 {
			return *falseCond(v1alpha1.ConditionQueueDurable, v1alpha1.ReasonSnapshotsOnly,
				"AOF is off and Redis takes RDB snapshots (INFO; CONFIG GET is denied): events acknowledged since the last snapshot are lost when Redis crashes or restarts; set appendonly yes")
		}
		return noPersistence("AOF is off and no RDB snapshot was taken since Redis started (INFO; CONFIG GET is denied)")
	}
	return durabilityUnknown("INFO persistence has no aof_enabled field")
}

// evictionCondition is QueueDurable=False for any policy but noeviction: volatile-* policies
// evict keys with a TTL, which includes the completed tasks that remember delivered svix-ids.
func evictionCondition(policy string) *metav1.Condition {
	if policy == "" || policy == "noeviction" {
		return nil
	}
	return falseCond(v1alpha1.ConditionQueueDurable, v1alpha1.ReasonEvictionPolicy,
		fmt.Sprintf("maxmemory-policy %s: at its memory limit Redis evicts keys, which can drop queued events and the records that deduplicate re-deliveries; set maxmemory-policy noeviction", bounded.Text(policy, 64)))
}

func noPersistence(what string) metav1.Condition {
	return *falseCond(v1alpha1.ConditionQueueDurable, v1alpha1.ReasonNoPersistence,
		what+": every queued event and dead letter is lost when Redis restarts; set appendonly yes")
}

// aofDurable describes what an AOF with the given fsync policy ("" = unknown) can lose.
func aofDurable(fsync string) metav1.Condition {
	i := slices.IndexFunc(aofByLoss, func(a aofPolicy) bool { return a.fsync == fsync })
	if i < 0 {
		i = slices.IndexFunc(aofByLoss, func(a aofPolicy) bool { return a.fsync == "" })
	}
	return metav1.Condition{Type: v1alpha1.ConditionQueueDurable, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonDurable, Message: aofByLoss[i].message}
}

type aofPolicy struct{ fsync, message string }

// aofByLoss says what an AOF can lose under each appendfsync policy, the most first; "" stands
// for a policy that could not be read.
var aofByLoss = []aofPolicy{
	{"no", "AOF appendfsync no: the kernel flushes the AOF about every 30 s, so up to that much of acknowledged writes can be lost on a crash; prefer everysec"},
	{"", "AOF on (fsync policy unknown: CONFIG GET is denied)"},
	{"everysec", "AOF appendfsync everysec: up to 1 s of acknowledged writes can be lost on a crash"},
	{"always", "AOF appendfsync always: no acknowledged write is lost on a crash"},
}

// parseInfo turns INFO output ("key:value" lines, "# Section" headers) into a map.
func parseInfo(s string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}
