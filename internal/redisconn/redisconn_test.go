package redisconn

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

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
