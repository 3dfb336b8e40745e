package redisconn

import (
	"context"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func TestConnOpt(t *testing.T) {
	tests := []struct {
		name    string
		conf    Config
		check   func(t *testing.T, opt asynq.RedisConnOpt)
		wantErr string
	}{
		{name: "plain with db", conf: Config{URL: "redis://r.example:6380/3"}, check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.Addr != "r.example:6380" || c.DB != 3 || c.TLSConfig != nil || c.Password != "" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "default port, password in url overridden by file value", conf: Config{URL: "redis://:inurl@r.example", Password: "fromfile"}, check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.Addr != "r.example:6379" || c.Password != "fromfile" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "tls", conf: Config{URL: "rediss://r.example:6380/0"}, check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.TLSConfig == nil || c.TLSConfig.ServerName != "r.example" || c.TLSConfig.InsecureSkipVerify {
				t.Fatalf("%+v", c.TLSConfig)
			}
		}},
		{name: "sentinel url", conf: Config{URL: "redis-sentinel://:pw@s1:26379,s2:26379/2?master=mymaster"}, check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisFailoverClientOpt)
			if c.MasterName != "mymaster" || len(c.SentinelAddrs) != 2 || c.DB != 2 || c.Password != "pw" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "sentinel flags", conf: Config{URL: "redis://ignored:1/1", SentinelMaster: "m", SentinelAddrs: []string{"s1:26379"}}, check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisFailoverClientOpt)
			if c.MasterName != "m" || c.SentinelAddrs[0] != "s1:26379" || c.DB != 1 {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "cluster", conf: Config{URL: "redis://ignored.example:1/0", ClusterAddrs: []string{"n1:7000", "10.0.0.2:7001"}, ReadTimeout: 4 * time.Second},
			check: func(t *testing.T, o asynq.RedisConnOpt) {
				c := o.(asynq.RedisClusterClientOpt)
				if !slices.Equal(c.Addrs, []string{"n1:7000", "10.0.0.2:7001"}) || c.TLSConfig != nil || c.Password != "" || c.ReadTimeout != 4*time.Second {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "cluster without url", conf: Config{ClusterAddrs: []string{"n1:7000"}}, check: func(t *testing.T, o asynq.RedisConnOpt) {
			if c := o.(asynq.RedisClusterClientOpt); len(c.Addrs) != 1 || c.TLSConfig != nil {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "cluster tls and password from the url, overridden by file value", conf: Config{URL: "rediss://usr:inurl@", ClusterAddrs: []string{"n1:7000"}, Password: "fromfile", InsecureSkipVerify: true},
			check: func(t *testing.T, o asynq.RedisConnOpt) {
				c := o.(asynq.RedisClusterClientOpt)
				// ServerName stays empty: each node is checked against the host it is dialled at.
				if c.TLSConfig == nil || c.TLSConfig.ServerName != "" || !c.TLSConfig.InsecureSkipVerify || c.Password != "fromfile" || c.Username != "usr" {
					t.Fatalf("%+v %+v", c, c.TLSConfig)
				}
			}},
		{name: "cluster with a db", conf: Config{URL: "redis://x/1", ClusterAddrs: []string{"n1:7000"}}, wantErr: "only database 0"},
		{name: "cluster and sentinel flags", conf: Config{URL: "redis://x/0", ClusterAddrs: []string{"n1:7000"}, SentinelMaster: "m", SentinelAddrs: []string{"s:26379"}}, wantErr: "not both"},
		{name: "cluster and sentinel url", conf: Config{URL: "redis-sentinel://s:26379/0?master=m", ClusterAddrs: []string{"n1:7000"}}, wantErr: "not both"},
		{name: "cluster address without port", conf: Config{ClusterAddrs: []string{"n1:7000", "n2"}}, wantErr: "address 2 of 2 is not host:port"},
		{name: "cluster address with a bad port", conf: Config{ClusterAddrs: []string{"n1:70000"}}, wantErr: "address 1 of 1"},
		{name: "empty", conf: Config{}, wantErr: "empty"},
		{name: "bad scheme", conf: Config{URL: "http://x"}, wantErr: "scheme"},
		{name: "bad db", conf: Config{URL: "redis://x/abc"}, wantErr: "database"},
		{name: "sentinel without master", conf: Config{URL: "redis-sentinel://s1:26379"}, wantErr: "master"},
		{name: "bad CA", conf: Config{URL: "rediss://x", CAPEM: []byte("nope")}, wantErr: "PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt, err := tt.conf.ConnOpt()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, opt)
		})
	}
}

// TestURLErrorsQuoteNothing: a password with a reserved character either parses as itself, or
// the error quotes no piece of the URL (and says how to fix it); percent-encoded, it always works.
func TestURLErrorsQuoteNothing(t *testing.T) {
	const host = "h0st.example"
	for _, pw := range []string{"Zq7/Xw9", "Zq7?Xw9", "Zq7#Xw9", "Zq7@Xw9", "Zq7:Xw9", "Zq7%Xw9", "Zq7/Xw9?Vu5#Ts3@Rp1:On2",
		"4711/0815", "4711?0815", "4711#0815", "/Zq7", "Zq7/", "?Zq7", "#Zq7"} {
		for _, user := range []string{"", "usr8"} {
			raw := "redis://" + user + ":" + pw + "@" + host + ":6379/2"
			opt, err := Config{URL: raw}.ConnOpt()
			if err == nil {
				c := opt.(asynq.RedisClientOpt)
				if c.Password != pw || c.Username != user || c.Addr != host+":6379" || c.DB != 2 {
					t.Errorf("%s parsed as user %q password %q addr %q db %d; want it read as written or rejected", raw, c.Username, c.Password, c.Addr, c.DB)
				}
			} else {
				msg := err.Error()
				for _, piece := range strings.FieldsFunc(strings.TrimPrefix(raw, "redis://"), func(r rune) bool { return strings.ContainsRune("/?#@:%", r) }) {
					if strings.Contains(msg, piece) {
						t.Errorf("%s: error %q quotes %q", raw, msg, piece)
					}
				}
				if !strings.Contains(msg, "percent-encoded") || !strings.Contains(msg, "--redis-password-file") {
					t.Errorf("%s: error %q does not say how to fix it", raw, msg)
				}
			}
			encoded := "redis://" + url.UserPassword(user, pw).String() + "@" + host + ":6379/2"
			opt, err = Config{URL: encoded}.ConnOpt()
			if err != nil {
				t.Errorf("percent-encoded %s: %v", encoded, err)
			} else if c := opt.(asynq.RedisClientOpt); c.Password != pw || c.Username != user {
				t.Errorf("percent-encoded %s: password %q, want %q", encoded, c.Password, pw)
			}
		}
	}
	// Every other URL error is generic too.
	for _, raw := range []string{"redis://Zq7x/Xw9y", "redis://:Zq7x@" + host + ":Xw9y/0", "Zq7x://" + host, "redis://" + host + "/0?Zq7x=Xw9y",
		"redis-sentinel://Zq7x:1,/0?master=m", "redis://:Zq7x@/0", "redis://" + host + "/0#Zq7x"} {
		_, err := Config{URL: raw}.ConnOpt()
		if err == nil || strings.Contains(err.Error(), "Zq7x") || strings.Contains(err.Error(), "Xw9y") || strings.Contains(err.Error(), host) {
			t.Errorf("%s: err = %v, want a generic error", raw, err)
		}
	}
}

// TestClusterAddressErrorsQuoteNothing: a URL with a password put in --redis-cluster-addrs by
// mistake is not echoed.
func TestClusterAddressErrorsQuoteNothing(t *testing.T) {
	for _, addr := range []string{"redis://:Zq7x@h0st.example:6379", ":Zq7x@h0st.example", "h0st.example:Zq7x", "Zq7x@h0st.example:6379"} {
		_, err := Config{ClusterAddrs: []string{addr}}.ConnOpt()
		if err == nil || strings.Contains(err.Error(), "Zq7x") || strings.Contains(err.Error(), "h0st") {
			t.Errorf("%s: err = %v, want a generic error", addr, err)
		}
	}
}

func TestFlagsCluster(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f.Register(fs)
	if err := cli.Parse(fs, []string{"--redis-url=rediss://:pw@ignored"}, func(k string) string {
		return map[string]string{"RWH_REDIS_CLUSTER_ADDRS": "n1:7000, n2:7001"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	conf, err := f.Config()
	if err != nil || !slices.Equal(conf.ClusterAddrs, []string{"n1:7000", "n2:7001"}) {
		t.Fatalf("conf=%+v err=%v", conf, err)
	}
	opt, err := conf.ConnOpt()
	if c, ok := opt.(asynq.RedisClusterClientOpt); err != nil || !ok || c.Password != "pw" || c.TLSConfig == nil || len(c.Addrs) != 2 {
		t.Fatalf("%+v, %v", opt, err)
	}
}

// TestCluster: the option reaches a real cluster, asynq enqueues through it to queues on
// different nodes and reads them back; Ping answers for a cluster and fails when no node does.
func TestCluster(t *testing.T) {
	c := testutil.StartRedisCluster(t, 3)
	f := Flags{URL: "redis://ignored:1/0", ClusterAddrs: c.Addrs()}
	conf, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := conf.ConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ping(ctx, opt); err != nil {
		t.Fatalf("ping: %v", err)
	}
	client, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { _ = client.Close(); _ = insp.Close() })
	queues := []string{"ns.a", "ns.b", "ns.c", "ns.d", "ns.e", "ns.f"}
	nodes := map[int]bool{}
	for _, q := range queues {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("resend:email.sent", []byte(q)), asynq.Queue(q), asynq.TaskID("id-"+q)); err != nil {
			t.Fatalf("enqueue to %s: %v", q, err)
		}
		n, err := c.PrimaryFor(ctx, "asynq:{"+q+"}:pending")
		if err != nil {
			t.Fatal(err)
		}
		nodes[n] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("the queues all live on node %v: the test proves nothing about a cluster", nodes)
	}
	for _, q := range queues {
		info, err := insp.GetTaskInfo(q, "id-"+q)
		if err != nil || string(info.Payload) != q {
			t.Fatalf("task of %s: %+v, %v", q, info, err)
		}
	}

	down := Config{ClusterAddrs: []string{"127.0.0.1:1"}}
	opt, err = down.ConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	if err := Ping(ctx, opt); err == nil {
		t.Fatal("ping of a cluster without nodes succeeded")
	}
}

func TestFlagsReadPasswordFileAndPing(t *testing.T) {
	r := testutil.StartRedis(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("not-needed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := Flags{URL: r.URL(), PasswordFile: pw}
	conf, err := f.Config()
	if err != nil || conf.Password != "not-needed" {
		t.Fatalf("conf=%+v err=%v", conf, err)
	}
	opt, err := Config{URL: r.URL()}.ConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Ping(ctx, opt); err != nil {
		t.Fatalf("ping: %v", err)
	}
	r.Stop()
	if err := Ping(ctx, opt); err == nil {
		t.Fatal("ping of a stopped redis succeeded")
	}
	if _, err := (&Flags{URL: r.URL(), PasswordFile: filepath.Join(dir, "missing")}).Config(); err == nil {
		t.Fatal("missing password file accepted")
	}
}
