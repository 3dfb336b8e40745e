// Package prometheus_test runs `promtool check rules` and `promtool test rules` on the alerts of
// rules.yaml (a PrometheusRule object: its spec is a rule file) with the cases of
// testdata/rules_test.yaml. promtool is pinned in the Makefile (`make promtool`, run by `make test`),
// which passes its path in $PROMTOOL.
package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func TestAlertRules(t *testing.T) {
	promtool := findPromtool(t)
	var rule struct {
		Spec struct {
			Groups []struct {
				Name  string           `json:"name"`
				Rules []map[string]any `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	readYAML(t, "rules.yaml", &rule)
	if len(rule.Spec.Groups) == 0 {
		t.Fatal("rules.yaml has no rule groups")
	}
	dir := t.TempDir()
	ruleFile, err := yaml.Marshal(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), ruleFile, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}

	// Every alert has at least one case.
	var cases struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, filepath.Join("testdata", "rules_test.yaml"), &cases)
	var tested []string
	for _, tc := range cases.Tests {
		for _, a := range tc.AlertRuleTest {
			tested = append(tested, a.Alertname)
		}
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if name, ok := r["alert"].(string); ok && !slices.Contains(tested, name) {
				t.Errorf("alert %s has no case in testdata/rules_test.yaml", name)
			}
		}
	}
}

func findPromtool(t *testing.T) string { return testutil.PinnedTool(t, "PROMTOOL", "promtool") }

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
