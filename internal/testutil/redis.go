// Package testutil starts the real servers integration tests need: a private redis-server on a
// free loopback port, and the envtest control plane binaries.
package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a private redis-server on 127.0.0.1.
type Redis struct {
	Port      int
	dir       string
	replicaOf int // port of the primary; 0 for a primary
	// busPort is the cluster bus port of a Redis Cluster node (see StartRedisCluster); 0 for a
	// standalone server. A cluster node keeps its nodes.conf in dir, and by default (see
	// Persistence) appends every write to an AOF there, fsynced before it answers.
	busPort     int
	persistence Persistence
	cmd         *exec.Cmd
	exited      chan struct{} // closed when the current process has been reaped
}

// Addr is "127.0.0.1:port".
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// URL is "redis://127.0.0.1:port/0".
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// StartRedis starts a redis-server for the test and stops it at cleanup.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r, err := NewRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// StartRedisReplica starts a redis-server that replicates primary, in sync when it returns,
// and stops it at cleanup.
func StartRedisReplica(t testing.TB, primary *Redis) *Redis {
	t.Helper()
	r, err := newRedis(serverOptions{replicaOf: primary.Port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// NewRedis starts a redis-server (for TestMain or benchmarks); call Close when done.
func NewRedis() (*Redis, error) { return newRedis(serverOptions{}) }

// NewRedisOn starts a redis-server on port (0: a free one) with its log in dir, which Close
// removes (the sandbox's Redis); call Close when done.
func NewRedisOn(port int, dir string) (*Redis, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return startRedis(port, dir, serverOptions{})
}

// NewRedisPersisting starts a redis-server that keeps its writes as p says (for benchmarks that
// compare servers with the same persistence); call Close when done.
func NewRedisPersisting(p Persistence) (*Redis, error) {
	return newRedis(serverOptions{persistence: p})
}

// Persistence is how a server keeps its writes. It matters for benchmarks: an AOF fsynced on
// every write costs a disk flush per write (or per batch of writes), AOF off costs nothing.
type Persistence int

const (
	// PersistDefault is what the server's kind gets by default: a standalone server keeps
	// nothing; a cluster node appends every write to an AOF fsynced before it answers (AOFAlways).
	PersistDefault Persistence = iota
	// PersistNothing: no AOF, no snapshots.
	PersistNothing
	// AOFEverySec: AOF on, fsynced once a second by a background thread (Redis' default
	// policy when AOF is on): a crash may lose the last second.
	AOFEverySec
	// AOFAlways: AOF on, fsynced before the write is answered.
	AOFAlways
)

// String is the setting as redis-server flags put it.
func (p Persistence) String() string {
	switch p {
	case PersistNothing:
		return "appendonly no"
	case AOFEverySec:
		return "appendonly yes, appendfsync everysec"
	case AOFAlways:
		return "appendonly yes, appendfsync always"
	}
	return "default"
}

// args are the redis-server flags of p for a server of its kind (cluster node or not).
func (p Persistence) args(clusterNode bool) []string {
	if p == PersistDefault {
		p = PersistNothing
		if clusterNode {
			p = AOFAlways
		}
	}
	switch p {
	case AOFEverySec:
		return []string{"--appendonly", "yes", "--appendfsync", "everysec"}
	case AOFAlways:
		return []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	return []string{"--appendonly", "no"}
}

// serverOptions say what kind of server startRedis starts.
type serverOptions struct {
	replicaOf   int  // port of the primary to replicate; 0 for a primary
	cluster     bool // a Redis Cluster node (not yet part of a cluster)
	persistence Persistence
}

func newRedis(o serverOptions) (*Redis, error) {
	dir, err := os.MkdirTemp("", "rwh-redis-")
	if err != nil {
		return nil, err
	}
	r, err := startRedis(0, dir, o)
	if err != nil {
		_ = os.RemoveAll(dir)
	}
	return r, err
}

// startRedis starts a server on port, or on a free port when it is 0: a free port can be
// taken between probing and binding, so then it tries another. A cluster node's bus port is
// always a free one (Redis' default, port+10000, may be taken or beyond 65535).
func startRedis(port int, dir string, o serverOptions) (*Redis, error) {
	var lastErr error
	for range 5 {
		p, bus := port, 0
		var err error
		if p == 0 {
			if p, err = FreePort(); err != nil {
				return nil, err
			}
		}
		if o.cluster {
			if bus, err = FreePort(); err != nil {
				return nil, err
			}
		}
		r := &Redis{Port: p, dir: dir, replicaOf: o.replicaOf, busPort: bus, persistence: o.persistence}
		if lastErr = r.Start(); lastErr == nil {
			return r, nil
		}
		if port != 0 && !o.cluster {
			break
		}
	}
	return nil, lastErr
}

// Start (re)starts the server on its port, e.g. after Stop in a fault test. It returns once the
// server answers PING and, for a replica, once its link to the primary is up.
func (r *Redis) Start() error {
	args := []string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
		"--repl-diskless-sync-delay", "0"} // a replica syncs at once, not after 5 s
	if r.busPort != 0 {
		args = append(args, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(r.busPort),
			"--cluster-config-file", filepath.Join(r.dir, "nodes.conf"),
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())))
	}
	args = append(args, r.persistence.args(r.busPort != 0)...)
	if r.replicaOf != 0 {
		args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(r.replicaOf))
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("redis-server not found: run 'make redis' (or 'make test', which installs it): %w", err)
	}
	r.cmd = exec.Command("redis-server", args...)
	r.cmd.SysProcAttr = ChildProcAttr() // never outlives a test or sandbox killed hard
	logf, err := os.Create(filepath.Join(r.dir, "redis.log"))
	if err != nil {
		return err
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	r.exited = exited
	go func() { _ = r.cmd.Wait(); _ = logf.Close(); close(exited) }()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited at start: %s", r.Port, tail(filepath.Join(r.dir, "redis.log")))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		if err == nil && r.replicaOf != 0 {
			err = r.online(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Stop()
	return fmt.Errorf("redis-server on port %d did not answer PING (or, as a replica, sync) within 10s", r.Port)
}

// online reports whether the primary lists this replica as online and every online replica
// acknowledges a fresh write. After a sync the primary holds its write stream back until the
// replica's first acknowledgement (up to a second later); until then a WAIT cannot count it.
func (r *Redis) online(ctx context.Context) error {
	p := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.replicaOf), MaxRetries: -1})
	defer func() { _ = p.Close() }()
	info, err := p.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, ",port="+strconv.Itoa(r.Port)+",state=online,") {
		return errors.New("replica not online at the primary yet")
	}
	replicas := strings.Count(info, ",state=online,")
	var acked *redis.Cmd
	_, err = p.Pipelined(ctx, func(pipe redis.Pipeliner) error { // one connection: WAIT covers its PUBLISH
		pipe.Publish(ctx, "testutil:replica-probe", "") // a write that reaches replicas and touches no key
		acked = pipe.Do(ctx, "wait", replicas, 100)
		return nil
	})
	if err != nil {
		return err
	}
	if n, _ := acked.Int(); n < replicas {
		return fmt.Errorf("%d of %d replicas acknowledge writes yet", n, replicas)
	}
	return nil
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing is answered, a replica
// acknowledges nothing. Resume undoes it; Stop and Close work on a paused server.
func (r *Redis) Pause() error { return r.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (r *Redis) Resume() error { return r.cmd.Process.Signal(syscall.SIGCONT) }

// Stop kills the server (SIGKILL). A standalone server keeps no files, so its data is lost; a
// cluster node keeps its AOF and nodes.conf, so Start brings it back with every write it
// acknowledged, in its place in the cluster.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		select { // wait until reaped, so a restart can bind the port
		case <-r.exited:
		case <-time.After(10 * time.Second):
		}
	}
}

// Close stops the server and removes its directory.
func (r *Redis) Close() {
	r.Stop()
	_ = os.RemoveAll(r.dir)
}

// Client returns a go-redis client for the server, closed at test cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	var last string
	for s := bufio.NewScanner(f); s.Scan(); {
		last = s.Text()
	}
	return last
}
