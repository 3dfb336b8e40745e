package controllers_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// One control plane and one Redis for the whole package; tests use their own namespaces.
var (
	cfg        *rest.Config
	kubeconfig string // path of a kubeconfig file for kubectl
	k8s        client.Client
	sharedRed  *testutil.Redis
)

const testImage = "example.test/rwh:dev"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if _, err := testutil.KubeAssetsDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(testutil.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// The benchmark creates 1000+ ClusterIP Services; envtest's default range has 256 addresses.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "rwh-controllers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.QPS, cfg.Burst = 500, 1000 // benchmarks create thousands of objects
	if k8s, err = client.New(cfg, client.Options{Scheme: manager.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if sharedRed, err = testutil.NewRedis(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sharedRed.Close()
	defer startResendSimulator()()
	defer stopSharedManager()
	return m.Run()
}

// runningManager is a manager running in this process.
type runningManager struct {
	cancel context.CancelFunc
	done   chan error
}

func (r *runningManager) stop() {
	r.cancel()
	<-r.done
}

// startManager runs the real manager (manager.Run) with the test defaults changed by adjust
// (may be nil) and waits until its caches are synced.
func startManager(tb testing.TB, adjust func(*manager.Options)) *runningManager {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	rm := &runningManager{cancel: cancel, done: make(chan error, 1)}
	opts := manager.Options{
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		Controller: controllers.Options{
			Image: testImage, StatusRefresh: time.Second, QueueStatusInterval: time.Second, RedisTimeout: time.Second,
			SkipNameValidation: true, MaxConcurrentReconciles: 4, Resend: resendTestOptions(),
		},
		OnStarted: func(ctrl.Manager) { close(started) },
		Logger:    testLogger(),
	}
	if adjust != nil {
		adjust(&opts)
	}
	go func() { rm.done <- manager.Run(ctx, cfg, opts) }()
	select {
	case <-started:
	case err := <-rm.done:
		cancel()
		tb.Fatalf("manager exited at start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		tb.Fatal("manager caches did not sync within 60s")
	}
	return rm
}

var (
	sharedMu  sync.Mutex
	sharedMgr *runningManager
)

// useSharedManager makes sure the package's manager (status refresh and queue-status interval
// 1 s, no tenant policy) runs.
func useSharedManager(t *testing.T) {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMgr == nil {
		sharedMgr = startManager(t, nil)
	}
}

// restartSharedManager stops the manager and starts a fresh one: a full resync from empty
// caches and an empty memory.
func restartSharedManager(t *testing.T) {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMgr != nil {
		sharedMgr.stop()
	}
	sharedMgr = startManager(t, nil)
}

// useDedicatedManager replaces the shared manager, for the rest of the test, by one with other
// options (tests run one at a time, and two managers would fight over every webhook). The next
// test that needs the shared manager starts it again.
func useDedicatedManager(t *testing.T, adjust func(*manager.Options)) {
	t.Helper()
	stopSharedManager()
	m := startManager(t, adjust)
	t.Cleanup(m.stop)
}

func stopSharedManager() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMgr != nil {
		sharedMgr.stop()
		sharedMgr = nil
	}
}

// reconcileTotal reads controller-runtime's reconcile counter for the controller.
func reconcileTotal() float64 {
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		return -1
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelIs(m, "controller", controllers.ControllerName) {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// consistently checks, for the whole window, that check keeps returning nil (something must
// not happen: an extra Event, a write); it fails the test at the first error.
func consistently(t testing.TB, window time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if err := check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
	}
}

// eventCount is a check for consistently: exactly want events with reason in ns.
func eventCount(t *testing.T, ns, reason string, want int) func() error {
	return func() error {
		if n := countEvents(t, ns, reason); n != want {
			return fmt.Errorf("%d %s events (counting series), want %d", n, reason, want)
		}
		return nil
	}
}

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rwh-test-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

const validSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func signingSecret(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
}

// webhook is a minimal ResendWebhook pointing at redisURL.
func webhook(ns, name, redisURL string) *v1alpha1.ResendWebhook {
	return &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: name + "-signing"},
			Queue:         v1alpha1.QueueSpec{Redis: v1alpha1.RedisSpec{URL: redisURL}},
		},
	}
}

// managerLogs captures the managers' log lines from Info up (not debug: benchmarks measure the
// heap), for tests that grep them.
var managerLogs testutil.LogBuffer

// secretsInLogs sees every log line of the managers, debug included, and keeps only what tests
// ask of it: whether a watched secret (a test's Resend API key) was in a line, and how many
// lines named the test's namespace. So a key in a debug line fails its test without keeping
// megabytes of logs.
var secretsInLogs secretScanner

type secretScanner struct {
	mu      sync.Mutex
	watched map[string]string // secret → namespace
	found   map[string]bool   // secret → seen in a line
	lines   map[string]int    // namespace → lines naming it
}

func (s *secretScanner) watch(secret, namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watched == nil {
		s.watched, s.found, s.lines = map[string]string{}, map[string]bool{}, map[string]int{}
	}
	s.watched[secret] = namespace
}

// Write takes one log line (slog handlers write a record at a time).
func (s *secretScanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for secret, ns := range s.watched {
		if bytes.Contains(p, []byte(secret)) {
			s.found[secret] = true
		}
		if bytes.Contains(p, []byte(ns)) {
			s.lines[ns]++
		}
	}
	return len(p), nil
}

// seen says whether a line held secret, and how many lines named its namespace.
func (s *secretScanner) seen(secret string) (leaked bool, linesOfNamespace int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.found[secret], s.lines[s.watched[secret]]
}

// testLogger shows the manager's errors (or everything with RWH_TEST_LOG=debug) on stderr,
// keeps Info and above in managerLogs, and scans every line, debug included, for the secrets
// tests watch (not while benchmarking: benchmarks measure the manager's CPU and heap).
func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("RWH_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	handlers := []slog.Handler{
		slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}),
		slog.NewJSONHandler(&managerLogs, &slog.HandlerOptions{Level: slog.LevelInfo}),
	}
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		handlers = append(handlers, slog.NewJSONHandler(&secretsInLogs, &slog.HandlerOptions{Level: slog.LevelDebug - 10}))
	}
	return slog.New(slog.NewMultiHandler(handlers...))
}

func crmetricsGather() ([]*dto.MetricFamily, error) { return crmetrics.Registry.Gather() }

// gaugeValue reads a gauge of the manager's registry with exactly these labels.
func gaugeValue(name string, labels map[string]string) (float64, bool) {
	families, err := crmetricsGather()
	if err != nil {
		return 0, false
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			match := true
			for k, v := range labels {
				match = match && labelIs(m, k, v)
			}
			if match {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
