package controllers_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// BenchmarkController creates N ResendWebhooks, measures how fast the controller brings every
// one to "objects exist, observedGeneration current", then restarts the manager (a full resync
// from empty caches) and counts the API writes that resync makes. Run with -benchtime 1x
// (make bench-controller).
func BenchmarkController(b *testing.B) {
	for range b.N {
		var rows []benchRow
		for _, n := range []int{200, 1000} {
			rows = append(rows, benchSize(b, n))
		}
		printTable(os.Stdout, rows)
	}
}

type benchRow struct {
	n                           int
	create, converge            time.Duration
	resync                      time.Duration
	resyncWrites                int            // objects whose resourceVersion changed
	resyncRequests              map[string]int // apiserver mutating requests by verb during resync
	peakHeapMB, peakSysMB       float64
	reconcilesDuringConvergence float64
}

func benchSize(b *testing.B, n int) benchRow {
	ctx := context.Background()
	ns := fmt.Sprintf("bench-%d-%d", n, time.Now().UnixNano()%100000)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	if err := k8s.Create(ctx, signingSecret(ns, "signing", map[string]string{"signing-secret": validSecret})); err != nil {
		b.Fatal(err)
	}
	row := benchRow{n: n}
	sampler := startMemSampler()

	mgr := startBenchManager(b)
	reconcilesBefore := reconcileTotal()
	start := time.Now()
	createWebhooks(b, ns, n)
	row.create = time.Since(start)
	waitConverged(b, ns, n, 10*time.Minute)
	row.converge = time.Since(start)
	row.reconcilesDuringConvergence = reconcileTotal() - reconcilesBefore

	// Full resync: stop the manager, start a fresh one, wait until it reconciled all N.
	before := versions(b, ns)
	reqBefore := apiserverWrites(b)
	mgr.stop()
	resyncStart := time.Now()
	reconciles := reconcileTotal()
	mgr = startBenchManager(b)
	deadline := time.Now().Add(10 * time.Minute)
	for reconcileTotal() < reconciles+float64(n) || workqueueDepth() > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("resync did not reconcile %d webhooks in time", n)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	row.resync = time.Since(resyncStart)
	after := versions(b, ns)
	for k, rv := range before {
		if after[k] != rv {
			row.resyncWrites++
		}
	}
	reqAfter := apiserverWrites(b)
	row.resyncRequests = map[string]int{}
	for k, v := range reqAfter {
		if d := v - reqBefore[k]; d > 0 {
			row.resyncRequests[k] = d
		}
	}
	mgr.stop()
	row.peakHeapMB, row.peakSysMB = sampler.stop()
	cleanup(b, ns)
	return row
}

// startBenchManager runs the manager with its production defaults (client rate limits, status
// refresh 30 s), so the figures are what a deployment would see.
func startBenchManager(b *testing.B) *runningManager {
	rm, _ := startBenchManagerWith(b)
	return rm
}

// startBenchManagerWith is startBenchManager that also returns the manager (for its cache).
func startBenchManagerWith(b *testing.B) (*runningManager, ctrl.Manager) {
	mcfg := rest.CopyConfig(cfg)
	mcfg.QPS, mcfg.Burst = manager.DefaultQPS, manager.DefaultBurst
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan ctrl.Manager, 1)
	rm := &runningManager{cancel: cancel, done: make(chan error, 1)}
	go func() {
		rm.done <- manager.Run(ctx, mcfg, manager.Options{
			MetricsBindAddress: "0", HealthProbeBindAddress: "0", Logger: testLogger(),
			Controller: controllers.Options{Image: testImage, SkipNameValidation: true},
			OnStarted:  func(m ctrl.Manager) { started <- m },
		})
	}()
	select {
	case m := <-started:
		return rm, m
	case err := <-rm.done:
		b.Fatalf("manager: %v", err)
	}
	return nil, nil
}

func createWebhooks(b *testing.B, ns string, n int) {
	err := testutil.ForEachParallel(n, 16, func(i int) error {
		rw := webhook(ns, fmt.Sprintf("wh-%04d", i), sharedRed.URL())
		rw.Spec.SigningSecret.Name = "signing"
		return k8s.Create(context.Background(), rw)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// waitConverged waits until every webhook has status for its generation and its receiver
// Deployment, Service and PDB exist.
func waitConverged(b *testing.B, ns string, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		var rws v1alpha1.ResendWebhookList
		var ds appsv1.DeploymentList
		var svcs corev1.ServiceList
		var pdbs policyv1.PodDisruptionBudgetList
		ctx := context.Background()
		err := k8s.List(ctx, &rws, client.InNamespace(ns))
		if err == nil {
			err = k8s.List(ctx, &ds, client.InNamespace(ns))
		}
		if err == nil {
			err = k8s.List(ctx, &svcs, client.InNamespace(ns))
		}
		if err == nil {
			err = k8s.List(ctx, &pdbs, client.InNamespace(ns))
		}
		if err != nil {
			b.Fatal(err)
		}
		current := 0
		for _, rw := range rws.Items {
			if rw.Status.ObservedGeneration == rw.Generation {
				current++
			}
		}
		if current == n && len(ds.Items) == n && len(svcs.Items) == n && len(pdbs.Items) == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not converged: %d/%d current, %d deployments, %d services, %d pdbs", current, n, len(ds.Items), len(svcs.Items), len(pdbs.Items))
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// versions maps kind/name → resourceVersion of every object the benchmark looks at.
func versions(b *testing.B, ns string) map[string]string {
	out := map[string]string{}
	lists := map[string]client.ObjectList{
		"rwh": &v1alpha1.ResendWebhookList{}, "deploy": &appsv1.DeploymentList{},
		"svc": &corev1.ServiceList{}, "pdb": &policyv1.PodDisruptionBudgetList{},
	}
	for kind, l := range lists {
		if err := k8s.List(context.Background(), l, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		switch l := l.(type) {
		case *v1alpha1.ResendWebhookList:
			for _, o := range l.Items {
				out[kind+"/"+o.Name] = o.ResourceVersion
			}
		case *appsv1.DeploymentList:
			for _, o := range l.Items {
				out[kind+"/"+o.Name] = o.ResourceVersion
			}
		case *corev1.ServiceList:
			for _, o := range l.Items {
				out[kind+"/"+o.Name] = o.ResourceVersion
			}
		case *policyv1.PodDisruptionBudgetList:
			for _, o := range l.Items {
				out[kind+"/"+o.Name] = o.ResourceVersion
			}
		}
	}
	return out
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiserverWrites reads the apiserver's request counters: mutating verbs by resource.
func apiserverWrites(tb testing.TB) map[string]int {
	return apiserverRequests(tb, "POST", "PUT", "PATCH", "APPLY", "DELETE")
}

// apiserverRequests reads the apiserver's request counters of these verbs, keyed "VERB
// resource[/subresource]".
func apiserverRequests(tb testing.TB, verbs ...string) map[string]int {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := hc.Get(strings.TrimRight(cfg.Host, "/") + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(line, -1) {
			labels[m[1]] = m[2]
		}
		if !slices.Contains(verbs, labels["verb"]) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			continue
		}
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		out[key] += int(v)
	}
	return out
}

// workqueueDepth is the controller's queue length.
func workqueueDepth() float64 {
	families, _ := crmetricsGather()
	for _, f := range families {
		if f.GetName() != "workqueue_depth" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelIs(m, "name", controllers.ControllerName) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// memSampler records the peak heap in use while the benchmark runs (manager and test client
// share the process; the client's share is small: it only creates and lists).
type memSampler struct {
	done      chan struct{}
	heap, sys atomic.Uint64
	wg        sync.WaitGroup
}

func startMemSampler() *memSampler {
	s := &memSampler{done: make(chan struct{})}
	s.wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.heap.Load() {
				s.heap.Store(ms.HeapInuse)
			}
			if ms.Sys > s.sys.Load() {
				s.sys.Store(ms.Sys)
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	})
	return s
}

func (s *memSampler) stop() (heapMB, sysMB float64) {
	close(s.done)
	s.wg.Wait()
	return float64(s.heap.Load()) / (1 << 20), float64(s.sys.Load()) / (1 << 20)
}

// cleanup removes the benchmark's objects (envtest runs no garbage collector).
func cleanup(b *testing.B, ns string) {
	ctx := context.Background()
	for _, obj := range []client.Object{&v1alpha1.ResendWebhook{}, &appsv1.Deployment{}, &corev1.Service{}, &policyv1.PodDisruptionBudget{}, &corev1.Secret{}} {
		if err := k8s.DeleteAllOf(ctx, obj, client.InNamespace(ns)); err != nil {
			b.Logf("cleanup %T: %v", obj, err)
		}
	}
	runtime.GC()
}

func printTable(w io.Writer, rows []benchRow) {
	fmt.Fprintf(w, "\nBenchmarkController (envtest, 2 cores shared with kube-apiserver+etcd; manager QPS %d burst %d)\n", manager.DefaultQPS, manager.DefaultBurst)
	fmt.Fprintf(w, "%6s %10s %12s %10s %11s %10s %14s %30s %12s %11s\n",
		"N", "create", "converged", "webhooks/s", "reconciles", "resync", "resync writes", "resync mutating requests", "peak heap", "peak sys")
	for _, r := range rows {
		var reqs []string
		for k, v := range r.resyncRequests {
			reqs = append(reqs, fmt.Sprintf("%s=%d", k, v))
		}
		slices.Sort(reqs)
		if len(reqs) == 0 {
			reqs = []string{"none"}
		}
		fmt.Fprintf(w, "%6d %10s %12s %10.1f %11.0f %10s %14d %30s %10.0fMB %9.0fMB\n",
			r.n, r.create.Round(time.Millisecond), r.converge.Round(time.Millisecond),
			float64(r.n)/r.converge.Seconds(), r.reconcilesDuringConvergence, r.resync.Round(time.Millisecond),
			r.resyncWrites, strings.Join(reqs, ","), r.peakHeapMB, r.peakSysMB)
	}
}

// BenchmarkControllerSecretMemory measures what unrelated Secrets cost the manager: with 50
// webhooks running, 2,000 Secrets of 100 KB each (Helm release Secrets are of that size) are
// created in another namespace; the manager's heap after GC is compared before and after its
// watch has seen them all. For contrast it then measures a cache of the full Secret objects
// (what a plain Watches(&corev1.Secret{}) costs). Run with -benchtime 1x (make bench-controller).
func BenchmarkControllerSecretMemory(b *testing.B) {
	const webhooks, secrets, size = 50, 2000, 100 << 10
	for range b.N {
		ctx := context.Background()
		suffix := time.Now().UnixNano() % 100000
		wns, sns := fmt.Sprintf("bench-hooks-%d", suffix), fmt.Sprintf("bench-secrets-%d", suffix)
		for _, ns := range []string{wns, sns} {
			if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				b.Fatal(err)
			}
		}
		if err := k8s.Create(ctx, signingSecret(wns, "signing", map[string]string{"signing-secret": validSecret})); err != nil {
			b.Fatal(err)
		}
		mgr, m := startBenchManagerWith(b)
		createWebhooks(b, wns, webhooks)
		waitConverged(b, wns, webhooks, 5*time.Minute)
		base := heapAfterGC()

		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		start := time.Now()
		err := testutil.ForEachParallel(secrets, 16, func(i int) error {
			return k8s.Create(context.Background(), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: sns, Name: fmt.Sprintf("release-%04d", i)},
				Data:       map[string][]byte{"release": payload},
			})
		})
		if err != nil {
			b.Fatal(err)
		}
		created := time.Since(start)
		waitCachedSecrets(b, m.GetCache(), sns, secrets)
		growth := heapAfterGC() - base
		mgr.stop()

		// The same Secrets in a full (typed) cache, in the same process.
		fullBase := heapAfterGC()
		stopFull := startFullSecretCache(b, sns) // the Secrets exist: synced = all cached
		fullGrowth := heapAfterGC() - fullBase
		stopFull()

		fmt.Printf("\nBenchmarkControllerSecretMemory: %d unrelated Secrets of %d KB (created in %s) beside %d webhooks\n",
			secrets, size>>10, created.Round(time.Second), webhooks)
		fmt.Printf("  manager heap growth after GC: %.1f MB (Secrets watched as metadata only)\n", float64(growth)/(1<<20))
		fmt.Printf("  a cache of the full Secrets:  %.1f MB (what watching Secrets without a filter costs)\n", float64(fullGrowth)/(1<<20))
		b.ReportMetric(float64(growth)/(1<<20), "MB-heap-growth")
		if growth > 20<<20 {
			b.Errorf("the manager's heap grew by %.1f MB with unrelated Secrets, want ≤ 20 MB", float64(growth)/(1<<20))
		}
		for _, ns := range []string{wns, sns} {
			cleanup(b, ns)
		}
	}
}

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// waitCachedSecrets waits until the manager's cache lists n Secrets (metadata) in ns.
func waitCachedSecrets(b *testing.B, c client.Reader, ns string, n int) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		err := c.List(context.Background(), list, client.InNamespace(ns))
		if err == nil && len(list.Items) >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the cache holds %d of %d Secrets (%v)", len(list.Items), n, err)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
}

// startFullSecretCache runs a controller-runtime cache of whole Secrets in ns until it has
// synced; the returned func stops it.
func startFullSecretCache(b *testing.B, ns string) func() {
	c, err := cache.New(cfg, cache.Options{Scheme: manager.Scheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Start(ctx) }()
	if _, err := c.GetInformer(ctx, &corev1.Secret{}); err != nil {
		b.Fatal(err)
	}
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("full Secret cache did not sync")
	}
	return func() { cancel(); <-done }
}
