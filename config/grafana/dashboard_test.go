// Package grafana_test checks the Grafana dashboard against the code: every metric it queries is
// one the receiver, the worker or the operator defines.
package grafana_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	// A metric name the code defines: Name: "rwh_…" in a prometheus.*Opts literal.
	definedName = regexp.MustCompile(`Name:\s*"(rwh_[a-z0-9_]+)"`)
	// A metric name in a PromQL expression.
	queriedName = regexp.MustCompile(`\brwh_[a-z0-9_]+\b`)
)

func TestDashboardQueriesOnlyMetricsTheCodeDefines(t *testing.T) {
	d := readDashboard(t)
	defined := definedMetrics(t)
	if len(defined) < 20 {
		t.Fatalf("found only %d metric definitions in the code: %v", len(defined), defined)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs = append(exprs, q["query"].(string))
		}
	}
	queried := map[string]bool{}
	for _, e := range exprs {
		for _, name := range queriedName.FindAllString(e, -1) {
			queried[name] = true
		}
	}
	for name := range queried {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && defined[b] {
				base = b
			}
		}
		if !defined[base] {
			t.Errorf("the dashboard queries %s, which no receiver, worker or operator code defines", name)
		}
	}
	// What the issue asks the dashboard to show, by the metric that shows it.
	for _, want := range []string{
		"rwh_receiver_requests_total",                  // ingest rate and answers by reason
		"rwh_receiver_enqueue_duration_seconds_bucket", // enqueue latency
		"rwh_queue_tasks",                              // queue depth by state
		"rwh_worker_sink_requests_total",               // deliveries
		"rwh_worker_retried_total",                     // retries
		"rwh_worker_dead_lettered_total",               // dead letters
		"rwh_worker_circuit_open",                      // breaker state
	} {
		if !queried[want] {
			t.Errorf("the dashboard does not query %s", want)
		}
	}
}

func TestDashboardIsWellFormed(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" {
		t.Error("the dashboard needs a fixed uid (links and provisioning use it)")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q needs queries on the ${datasource} variable", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced expression %s", p.Title, tg.Expr)
			}
		}
	}
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	for _, want := range []string{"datasource", "namespace", "webhook"} {
		if !slices.Contains(names, want) {
			t.Errorf("variable %s missing (have %v)", want, names)
		}
	}
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	return d
}

// definedMetrics scans the operator's Go sources (tests excluded) for metric names.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	root := testutil.RepoRoot()
	defined := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (strings.HasPrefix(e.Name(), ".") || e.Name() == "bin" || e.Name() == "testdata") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range definedName.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return defined
}
