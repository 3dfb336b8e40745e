package receiver

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// SecretSource gives the handler the signing secrets valid right now; a request is accepted
// when any of them matches. It must be safe for concurrent use and cheap (called per request).
type SecretSource interface {
	Verifiers() []*signing.Verifier
}

// StaticSecrets is a fixed SecretSource (tests, benchmarks, embedding the handler).
type StaticSecrets []*signing.Verifier

// NewStaticSecrets parses whsec_… values.
func NewStaticSecrets(values ...string) (StaticSecrets, error) {
	var s StaticSecrets
	for i, v := range values {
		v, err := signing.ParseVerifier([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i, err)
		}
		s = append(s, v)
	}
	return s, nil
}

// Verifiers implements SecretSource.
func (s StaticSecrets) Verifiers() []*signing.Verifier { return s }

// SecretsDir is a SecretSource backed by a directory in which every regular file holds one
// whsec_… secret, the way Kubernetes mounts a Secret. Rescan re-reads it and swaps the set
// atomically, so a request never sees a half-loaded set during rotation.
type SecretsDir struct {
	dir     string
	log     *slog.Logger
	metrics *Metrics
	current atomic.Pointer[secretSet]
}

// secretSet is one scan of the directory.
type secretSet struct {
	verifiers   []*signing.Verifier
	valid       []string          // file names of usable secrets
	invalid     map[string]string // file name → why it is unusable
	fingerprint [sha256.Size]byte // changes when any name or content changes
}

// NewSecretsDir scans dir once; it fails only when dir cannot be read at all.
// A directory without a valid secret is not an error here (readiness reports it).
func NewSecretsDir(dir string, log *slog.Logger, m *Metrics) (*SecretsDir, error) {
	s := &SecretsDir{dir: dir, log: log, metrics: m}
	if err := s.Rescan(); err != nil {
		return nil, err
	}
	return s, nil
}

// Verifiers implements SecretSource.
func (s *SecretsDir) Verifiers() []*signing.Verifier { return s.current.Load().verifiers }

// Valid is the number of usable secrets loaded.
func (s *SecretsDir) Valid() int { return len(s.current.Load().verifiers) }

// Rescan reads the directory again and installs the result when it differs. When the
// directory cannot be read the previous set stays in use and the error is returned.
func (s *SecretsDir) Rescan() error {
	next, err := scanSecrets(s.dir)
	if err != nil {
		return err
	}
	prev := s.current.Load()
	if prev != nil && prev.fingerprint == next.fingerprint {
		return nil
	}
	s.current.Store(next)
	s.metrics.setSecrets(len(next.valid), len(next.invalid))
	for _, name := range slices.Sorted(maps.Keys(next.invalid)) {
		// The file name only: never the content.
		s.log.Warn("ignoring invalid signing secret file", "file", name, "reason", next.invalid[name])
	}
	s.log.Info("signing secrets loaded", "dir", s.dir, "files", next.valid, "valid", len(next.valid), "invalid", len(next.invalid))
	return nil
}

// Run rescans every interval until ctx is done. A failing scan is logged once per distinct error.
func (s *SecretsDir) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.Rescan()
		switch {
		case err != nil && err.Error() != lastErr:
			s.log.Error("cannot rescan signing secrets; keeping the previous set", "dir", s.dir, "error", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
	}
}

func scanSecrets(dir string) (*secretSet, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("secrets dir: %w", err)
	}
	set := &secretSet{invalid: map[string]string{}}
	h := sha256.New()
	for _, e := range entries { // ReadDir sorts by name, so the fingerprint is stable
		name := e.Name()
		if strings.HasPrefix(name, ".") { // Kubernetes' ..data and ..2026_… bookkeeping
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // follows the symlinks Kubernetes mounts keys as
		if err != nil {
			if errors.Is(err, os.ErrNotExist) { // dangling link mid-rotation
				continue
			}
			set.invalid[name] = "unreadable"
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		content, err := os.ReadFile(path)
		if err != nil {
			set.invalid[name] = "unreadable"
			continue
		}
		_, _ = fmt.Fprintf(h, "%s\x00%d\x00", name, len(content))
		h.Write(content)
		v, err := signing.ParseVerifier(content)
		if err != nil {
			set.invalid[name] = err.Error()
			continue
		}
		set.verifiers = append(set.verifiers, v)
		set.valid = append(set.valid, name)
	}
	for _, name := range slices.Sorted(maps.Keys(set.invalid)) {
		_, _ = fmt.Fprintf(h, "invalid\x00%s\x00", name)
	}
	h.Sum(set.fingerprint[:0])
	return set, nil
}
