package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The sample must keep the default URLs writeSample replaces, name its sink secret and its
// Resend API key, and leave the signing secret to the operator.
func TestSample(t *testing.T) {
	path := filepath.Join(testutil.RepoRoot(), "test", "sandbox", "sample.yaml")
	smp, err := readSample(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(smp.sinkSecret, "whsec_") {
		t.Errorf("sink secret read from the sample = %q, want a whsec_ value", smp.sinkSecret)
	}
	if len(smp.apiKeys) != 1 || !strings.HasPrefix(smp.apiKeys[0], "re_") {
		t.Errorf("API keys read from the sample: %q, want one re_ key", smp.apiKeys)
	}
	manifest := string(smp.manifest)
	for _, s := range []string{sampleRedisURL, sampleSinkURL} {
		if !strings.Contains(manifest, s) {
			t.Errorf("sample.yaml no longer contains %s, which make dev rewrites when the port is taken", s)
		}
	}
	if strings.Count(manifest, "whsec_") != 1 {
		t.Error("sample.yaml hard-codes a signing secret: with spec.resend the operator writes it")
	}
}
