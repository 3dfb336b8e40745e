package controllers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// QueueReachable names the class of a Redis error, never its text: the text carries addresses
// and would turn the operator into a port scanner for whoever writes spec.queue.redis.url.
// Real failures against servers on 127.0.0.1; the DNS case is built (no lookups from tests).
func TestRedisErrorClasses(t *testing.T) {
	red := testutil.StartRedis(t)
	admin := red.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">right", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	closedPort, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	silent := silentListener(t)
	// A TLS server whose certificate no system CA signed (httptest's own CA).
	tlsServer := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsServer.Close)
	untrusted := tlsServer.Listener.Addr().String()

	figuresErr := func(cfg redisconn.Config) error {
		q := newQueueMonitors(300 * time.Millisecond)
		defer q.closeAll()
		m, err := q.get(types.NamespacedName{Namespace: "n", Name: "w"}, cfg)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = m.read(ctx, shard.Layout{Queue: "n.w", Shards: 1}, false)
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", figuresErr(redisconn.Config{URL: "redis://127.0.0.1:" + strconv.Itoa(closedPort) + "/0"}), redisErrRefused},
		{"timeout", figuresErr(redisconn.Config{URL: "redis://" + silent + "/0"}), redisErrTimeout},
		{"wrong password", figuresErr(redisconn.Config{URL: "redis://app@" + red.Addr() + "/0", Password: "wrong"}), redisErrAuth},
		{"untrusted certificate", figuresErr(redisconn.Config{URL: "rediss://" + untrusted + "/0"}), redisErrTLS},
		{"DNS", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "redis.example.invalid", IsNotFound: true}}, redisErrDNS},
		{"other", errors.New("EOF"), redisErrOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("no error")
			}
			if got := redisErrorClass(tc.err); got != tc.want {
				t.Fatalf("class %q for %v, want %q", got, tc.err, tc.want)
			}
		})
	}
}

// silentListener accepts connections and never answers; it returns its address.
func silentListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// QueueDurable follows Redis' real settings, changed at run time with CONFIG SET, and falls back
// to INFO for a user that may not run CONFIG.
func TestQueueDurableFromRedisSettings(t *testing.T) {
	red := testutil.StartRedis(t) // starts with appendonly no, save ""
	admin := red.Client(t)
	ctx := context.Background()
	set := func(kv ...string) {
		t.Helper()
		for i := 0; i < len(kv); i += 2 {
			if err := admin.ConfigSet(ctx, kv[i], kv[i+1]).Err(); err != nil {
				t.Fatalf("CONFIG SET %s %s: %v", kv[i], kv[i+1], err)
			}
		}
	}
	check := func(c redis.UniversalClient, status metav1.ConditionStatus, reason, inMessage string) {
		t.Helper()
		got := readDurability(ctx, c)
		if got.Type != v1alpha1.ConditionQueueDurable || got.Status != status || got.Reason != reason || !strings.Contains(got.Message, inMessage) {
			t.Fatalf("QueueDurable %s %s %q, want %s %s containing %q", got.Status, got.Reason, got.Message, status, reason, inMessage)
		}
	}
	check(admin, metav1.ConditionFalse, v1alpha1.ReasonNoPersistence, "appendonly no")
	set("save", "3600 1")
	check(admin, metav1.ConditionFalse, v1alpha1.ReasonSnapshotsOnly, `save "3600 1"`)
	set("appendonly", "yes", "appendfsync", "everysec")
	check(admin, metav1.ConditionTrue, v1alpha1.ReasonDurable, "up to 1 s of acknowledged writes")
	set("appendfsync", "always")
	check(admin, metav1.ConditionTrue, v1alpha1.ReasonDurable, "no acknowledged write is lost")
	set("maxmemory-policy", "volatile-lru")
	check(admin, metav1.ConditionFalse, v1alpha1.ReasonEvictionPolicy, "volatile-lru")

	// A user without CONFIG: INFO still tells AOF and the eviction policy.
	if err := admin.Do(ctx, "ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	limited := redis.NewClient(&redis.Options{Addr: red.Addr(), Username: "noconfig", Password: "pw"})
	t.Cleanup(func() { _ = limited.Close() })
	if err := limited.ConfigGet(ctx, "appendonly").Err(); err == nil {
		t.Fatal("the limited user may run CONFIG: the fallback is not exercised")
	}
	check(limited, metav1.ConditionFalse, v1alpha1.ReasonEvictionPolicy, "volatile-lru")
	set("maxmemory-policy", "noeviction")
	check(limited, metav1.ConditionTrue, v1alpha1.ReasonDurable, "fsync policy unknown")
	set("appendonly", "no", "save", "")
	check(limited, metav1.ConditionFalse, v1alpha1.ReasonNoPersistence, "AOF is off")

	// Nothing readable at all.
	if err := admin.Do(ctx, "ACL", "SETUSER", "blind", "on", ">pw", "~*", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	blind := redis.NewClient(&redis.Options{Addr: red.Addr(), Username: "blind", Password: "pw"})
	t.Cleanup(func() { _ = blind.Close() })
	check(blind, metav1.ConditionUnknown, v1alpha1.ReasonDurabilityUnknown, "INFO persistence failed")
}

func TestDurabilityFromInfo(t *testing.T) {
	info := parseInfo("# Persistence\r\naof_enabled:0\r\nrdb_saves:3\r\n# Memory\r\nmaxmemory_policy:noeviction\r\n")
	if c := durabilityFromInfo(info); c.Reason != v1alpha1.ReasonSnapshotsOnly {
		t.Fatalf("snapshots taken, AOF off: %+v", c)
	}
	if c := durabilityFromInfo(map[string]string{}); c.Status != metav1.ConditionUnknown {
		t.Fatalf("no aof_enabled field: %+v", c)
	}
	if c := durabilityFromConfig(map[string]string{"appendonly": "yes", "appendfsync": "no", "maxmemory-policy": "noeviction"}); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "30 s") {
		t.Fatalf("appendfsync no: %+v", c)
	}
	if c := durabilityFromConfig(map[string]string{"appendonly": "yes", "maxmemory-policy": "allkeys-lru"}); c.Reason != v1alpha1.ReasonEvictionPolicy {
		t.Fatalf("allkeys-lru: %+v", c)
	}
}

// A failed reading never replaces a good one, and a good one is reused within the interval.
func TestDurabilityCacheKeepsLastGoodReading(t *testing.T) {
	red := testutil.StartRedis(t)
	c := red.Client(t)
	var d durabilityCache
	ctx := context.Background()
	first := d.get(ctx, c, time.Hour)
	if first.Reason != v1alpha1.ReasonNoPersistence {
		t.Fatalf("first reading %+v", first)
	}
	if err := c.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if again := d.get(ctx, c, time.Hour); again.Reason != first.Reason {
		t.Fatalf("re-read within the interval: %+v", again)
	}
	if fresh := d.get(ctx, c, 0); fresh.Reason != v1alpha1.ReasonDurable {
		t.Fatalf("after the interval: %+v", fresh)
	}
	red.Stop()
	if kept := d.get(ctx, c, 0); kept.Reason != v1alpha1.ReasonDurable {
		t.Fatalf("an unreachable Redis replaced the last good reading: %+v", kept)
	}
	var empty durabilityCache
	if c := empty.last("Redis is unreachable"); c.Status != metav1.ConditionUnknown || !strings.Contains(c.Message, "unreachable") {
		t.Fatalf("no reading yet: %+v", c)
	}
}

// On a Redis Cluster QueueDurable is the least durable primary's reading, named, every time:
// asking whichever node the client picks would flip the condition on an uneven cluster.
func TestQueueDurableOnEveryClusterPrimary(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3) // AOF, appendfsync always, on every node
	client := cluster.Client(t)
	ctx := context.Background()
	check := func(status metav1.ConditionStatus, reason string, inMessage ...string) {
		t.Helper()
		for range 6 { // the same answer each time, whatever node a keyless command would go to
			got := readDurability(ctx, client)
			if got.Status != status || got.Reason != reason || slices.ContainsFunc(inMessage, func(s string) bool { return !strings.Contains(got.Message, s) }) {
				t.Fatalf("QueueDurable %s %s %q, want %s %s containing %q", got.Status, got.Reason, got.Message, status, reason, inMessage)
			}
		}
	}
	check(metav1.ConditionTrue, v1alpha1.ReasonDurable, "all 3 primaries", "no acknowledged write is lost")

	primaries := cluster.Primaries()
	set := func(node int, kv ...string) {
		t.Helper()
		c := cluster.Node(node).Client(t)
		for i := 0; i < len(kv); i += 2 {
			if err := c.ConfigSet(ctx, kv[i], kv[i+1]).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	set(primaries[1], "appendfsync", "everysec")
	check(metav1.ConditionTrue, v1alpha1.ReasonDurable, cluster.Node(primaries[1]).Addr(), "the least durable of 3", "up to 1 s")
	set(primaries[2], "appendonly", "no", "save", "")
	check(metav1.ConditionFalse, v1alpha1.ReasonNoPersistence, cluster.Node(primaries[2]).Addr(), "appendonly no")
}
