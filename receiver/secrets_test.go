package receiver

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// k8sSecretDir mimics how the kubelet mounts a Secret volume: the keys live in a timestamped
// directory, "..data" links to it, and each key is a symlink "key" → "..data/key". An update
// writes a new timestamped directory and swaps "..data" atomically (rename of a symlink).
type k8sSecretDir struct {
	t   *testing.T
	dir string
	gen int
}

func newK8sSecretDir(t *testing.T, keys map[string]string) *k8sSecretDir {
	d := &k8sSecretDir{t: t, dir: t.TempDir()}
	d.update(keys)
	return d
}

func (d *k8sSecretDir) update(keys map[string]string) {
	t := d.t
	d.gen++
	ts := fmt.Sprintf("..2026_11_28_15_00_%02d.%d", d.gen, d.gen)
	if err := os.Mkdir(filepath.Join(d.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(d.dir, ts, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	// Key links: add the new ones, drop the ones that are gone.
	entries, _ := os.ReadDir(d.dir)
	for _, e := range entries {
		if name := e.Name(); name[0] != '.' {
			if _, ok := keys[name]; !ok {
				_ = os.Remove(filepath.Join(d.dir, name))
			}
		}
	}
	for k := range keys {
		link := filepath.Join(d.dir, k)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSecretsDirKubernetesLayoutAndInvalidFiles(t *testing.T) {
	d := newK8sSecretDir(t, map[string]string{
		"signing-secret": vectorSecret + "\n", // trailing newline is fine
		"empty":          "",
		"plain":          "not-a-secret",
		"badbase64":      "whsec_***",
	})
	// A plain regular file and a dotfile next to the links.
	if err := os.WriteFile(filepath.Join(d.dir, "extra"), []byte(otherSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, ".hidden"), []byte("whsec_AAAA"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "ns/hook")
	s, err := NewSecretsDir(d.dir, slog.New(slog.NewJSONHandler(logs, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	if s.Valid() != 2 {
		t.Fatalf("valid = %d, want 2 (signing-secret, extra)", s.Valid())
	}
	if metricValue(m.secretsLoaded) != 2 || metricValue(m.secretsInvalid) != 3 {
		t.Fatalf("metrics loaded/invalid = %v/%v, want 2/3", metricValue(m.secretsLoaded), metricValue(m.secretsInvalid))
	}
	for _, name := range []string{`"file":"empty"`, `"file":"plain"`, `"file":"badbase64"`} {
		if !strings.Contains(logs.String(), name) {
			t.Errorf("no log line for invalid %s:\n%s", name, logs)
		}
	}
	if strings.Contains(logs.String(), "not-a-secret") || strings.Contains(logs.String(), "MfKQ9r8") {
		t.Errorf("logs contain secret content:\n%s", logs)
	}
	if _, err := NewSecretsDir(filepath.Join(d.dir, "missing"), slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("a missing directory must be an error at start")
	}
}

// TestRotationWithoutFailedRequests adds a second secret, moves the sender to it and removes
// the first, all while requests keep flowing: none may fail.
func TestRotationWithoutFailedRequests(t *testing.T) {
	d := newK8sSecretDir(t, map[string]string{"signing-secret": vectorSecret})
	m := NewMetrics(prometheus.NewRegistry(), "ns/hook")
	s, err := NewSecretsDir(d.dir, slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(t.Context(), 50*time.Millisecond)
	f := newFixture(t, func(o *Options) { o.Secrets = s })

	var current atomic.Value // the secret the "sender" signs with
	current.Store(vectorSecret)
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Not the test's goroutine: errors are reported, never t.Fatal.
			body := event("email.sent")
			hdr, err := sign(current.Load().(string), fmt.Sprintf("msg_rot_%d", i), time.Now(), body)
			var r response
			if err == nil {
				r, err = tryDo(http.MethodPost, f.server.URL, hdr, bytes.NewReader(body))
			}
			sent.Add(1)
			if err != nil || r.code != http.StatusOK {
				failed.Add(1)
				t.Errorf("request %d during rotation: %d %s %v", i, r.code, r.body, err)
			}
		}
	})

	// 1. add the new key next to the old one (Secret updated, both keys listed)
	d.update(map[string]string{"signing-secret": vectorSecret, "signing-secret-next": otherSecret})
	eventually(t, 10*time.Second, "the new key is loaded", func() bool { return s.Valid() == 2 })
	// 2. the sender switches to the new secret
	current.Store(otherSecret)
	n := sent.Load()
	eventually(t, 10*time.Second, "requests with the new secret", func() bool { return sent.Load() > n+5 })
	// 3. the old key is removed
	d.update(map[string]string{"signing-secret-next": otherSecret})
	eventually(t, 10*time.Second, "the old key is dropped", func() bool { return s.Valid() == 1 })
	n = sent.Load()
	eventually(t, 10*time.Second, "more requests after removal", func() bool { return sent.Load() > n+5 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || sent.Load() < 10 {
		t.Fatalf("sent %d, failed %d", sent.Load(), failed.Load())
	}
	// The old secret no longer works.
	body := event("email.sent")
	if r := f.post(t, signed(t, vectorSecret, "msg_rot_old", time.Now(), body), body); r.code != http.StatusUnauthorized {
		t.Fatalf("old secret after rotation: %d", r.code)
	}
	if metricValue(m.secretsLoaded) != 1 {
		t.Fatalf("secrets_loaded = %v", metricValue(m.secretsLoaded))
	}
	// All keys removed: nothing valid (readiness fails in the command; requests get 401).
	d.update(map[string]string{})
	eventually(t, 10*time.Second, "no key left", func() bool { return s.Valid() == 0 })
	if r := f.post(t, signed(t, otherSecret, "msg_rot_none", time.Now(), body), body); r.code != http.StatusUnauthorized {
		t.Fatalf("no secrets: %d", r.code)
	}
}
