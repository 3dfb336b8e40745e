package testutil

import (
	"context"
	"testing"
)

// TestRedisPersistence: a server started with a Persistence runs with it, and a restart keeps it.
func TestRedisPersistence(t *testing.T) {
	for p, want := range map[Persistence][2]string{
		PersistDefault: {"no", ""},
		PersistNothing: {"no", ""},
		AOFEverySec:    {"yes", "everysec"},
		AOFAlways:      {"yes", "always"},
	} {
		t.Run(p.String(), func(t *testing.T) {
			r, err := NewRedisPersisting(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			check := func(when string) {
				cfg, err := r.Client(t).ConfigGet(context.Background(), "append*").Result()
				if err != nil {
					t.Fatal(err)
				}
				if cfg["appendonly"] != want[0] || (want[1] != "" && cfg["appendfsync"] != want[1]) {
					t.Errorf("%s: appendonly %q, appendfsync %q; want %q, %q", when, cfg["appendonly"], cfg["appendfsync"], want[0], want[1])
				}
			}
			check("at start")
			r.Stop()
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			check("after a restart")
		})
	}
	if got := PersistDefault.args(true); got[1] != "yes" || got[3] != "always" {
		t.Errorf("a cluster node's default persistence is %v, want AOF fsynced always", got)
	}
}
