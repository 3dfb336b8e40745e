package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The sample must keep the default URLs writeSample replaces, and name its sink secret.
func TestSample(t *testing.T) {
	path := filepath.Join(testutil.RepoRoot(), "hack", "dev", "sample.yaml")
	manifest, sinkSecret, err := readSample(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sinkSecret, "whsec_") {
		t.Errorf("sink secret read from the sample = %q, want a whsec_ value", sinkSecret)
	}
	for _, s := range []string{sampleRedisURL, sampleSinkURL} {
		if !strings.Contains(string(manifest), s) {
			t.Errorf("sample.yaml no longer contains %s, which make dev rewrites when the port is taken", s)
		}
	}
}
