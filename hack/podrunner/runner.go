// Package podrunner emulates just enough of a Kubernetes node and ingress controller on one
// machine for the sandbox (make dev) and the end-to-end test: envtest runs a real apiserver but
// no kubelet, deployment controller, garbage collector or ingress controller. The runner
//
//   - runs spec.replicas local processes per Deployment from its pod template (only containers
//     whose image is the operator's image and that set no command: they run the operator
//     binary with the container's args and env), with Secret/ConfigMap/projected volumes
//     materialised into a directory and kept up to date (atomically, like the kubelet), and
//     container ports remapped to free loopback ports;
//   - probes readiness/liveness, restarts crashed processes with backoff, rolls a changed
//     template with maxUnavailable 0, and writes Deployment status like the deployment
//     controller;
//   - serves every Ingress on one loopback address as a reverse proxy (host and path rules →
//     Service → ready local pods, round-robin) and writes the Ingress load-balancer status;
//   - deletes objects whose owners are all gone (the garbage collector's job), so deleting a
//     ResendWebhook removes its Deployments and thereby stops their processes.
package podrunner

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/admin"
)

// Config configures a Runner.
type Config struct {
	// RestConfig reaches the apiserver.
	RestConfig *rest.Config
	// Binary is the operator binary run for containers of one of Images (bin/resend-webhook-operator).
	Binary string
	// Images are the container images that mean "the operator binary" (the manager's --image).
	Images []string
	// RunDir holds pod directories: materialised volumes and one log file per container.
	RunDir string
	// IngressAddr is where Ingresses are served; default 127.0.0.1:8080. Use 127.0.0.1:0 in tests.
	IngressAddr string
	// Log receives the runner's own logs.
	Log *slog.Logger
	// PodOutput, when set, also receives every container's output, each line prefixed with
	// "[namespace/pod/container] ". The per-container log files are always written.
	PodOutput io.Writer
	// MaxGracePeriod caps terminationGracePeriodSeconds when stopping a container; default 10s.
	MaxGracePeriod time.Duration
	// GCInterval is how often orphaned objects are looked for; default 5s (owner deletions
	// seen through the watch trigger a sweep at once).
	GCInterval time.Duration
}

// Runner is a running pod runner. Create it with Start; stop it with Stop.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	client  client.Client
	api     client.Reader // uncached, for owner lookups
	objects ObjectSource
	events  chan event.GenericEvent
	gcNow   chan struct{}

	podCtx    context.Context
	stopPods  context.CancelFunc
	stopMgr   context.CancelFunc
	mgrDone   chan error
	stopping  sync.WaitGroup
	ingress   *ingressProxy
	ingressLn net.Listener
	proxyDone chan error

	mu          sync.Mutex
	deployments map[types.NamespacedName]*deployState
	terminating map[*pod]bool
	outMu       sync.Mutex
	portsMu     sync.Mutex // separate from mu: ports are allocated while mu is held
	ports       map[int]bool
}

// deployState is what the runner runs for one Deployment.
type deployState struct {
	pods           []*pod
	reportedReason string // last "not runnable" reason logged, to log it once
}

// Start starts the runner's controllers and the Ingress proxy and returns once its caches are
// synced and the proxy listens.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.RestConfig == nil || cfg.Binary == "" || len(cfg.Images) == 0 || cfg.RunDir == "" {
		return nil, errors.New("podrunner: RestConfig, Binary, Images and RunDir are required")
	}
	if cfg.IngressAddr == "" {
		cfg.IngressAddr = "127.0.0.1:8080"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxGracePeriod <= 0 {
		cfg.MaxGracePeriod = 10 * time.Second
	}
	if cfg.GCInterval <= 0 {
		cfg.GCInterval = 5 * time.Second
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg.RestConfig, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(cfg.Log.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("podrunner: %w", err)
	}
	r := &Runner{
		cfg:         cfg,
		log:         cfg.Log,
		client:      mgr.GetClient(),
		api:         mgr.GetAPIReader(),
		objects:     cacheSource{mgr.GetClient()},
		events:      make(chan event.GenericEvent, 1024),
		gcNow:       make(chan struct{}, 1),
		deployments: map[types.NamespacedName]*deployState{},
		terminating: map[*pod]bool{},
		ports:       map[int]bool{},
		mgrDone:     make(chan error, 1),
		proxyDone:   make(chan error, 1),
	}
	r.podCtx, r.stopPods = context.WithCancel(context.WithoutCancel(ctx))
	if err := r.setupControllers(mgr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.IngressAddr)
	if err != nil {
		return nil, fmt.Errorf("podrunner: ingress listen on %s: %w", cfg.IngressAddr, err)
	}
	r.ingressLn = ln
	r.ingress = newIngressProxy(r)
	mctx, cancel := context.WithCancel(ctx)
	r.stopMgr = cancel
	go func() { r.mgrDone <- mgr.Start(mctx) }()
	go func() {
		srv := admin.NewServer(r.ingress)
		srv.WriteTimeout = 60 * time.Second
		r.proxyDone <- serveListener(mctx, srv, ln)
	}()
	syncCtx, cancelSync := context.WithTimeout(ctx, time.Minute)
	defer cancelSync()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		r.Stop()
		return nil, errors.New("podrunner: caches did not sync")
	}
	r.log.Info("pod runner started", "ingress", r.IngressAddr(), "binary", cfg.Binary, "images", cfg.Images, "runDir", cfg.RunDir)
	return r, nil
}

// serveListener serves srv on ln until ctx ends, then shuts it down within 5 s.
func serveListener(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// IngressAddr is the address the Ingress proxy listens on (host:port).
func (r *Runner) IngressAddr() string { return r.ingressLn.Addr().String() }

// Stop stops the controllers and the proxy, then every pod (SIGTERM, SIGKILL after the grace
// period), and waits for all of it.
func (r *Runner) Stop() {
	r.stopMgr()
	<-r.mgrDone
	<-r.proxyDone
	r.mu.Lock()
	var all []*pod
	for key, ds := range r.deployments {
		all = append(all, ds.pods...)
		delete(r.deployments, key)
	}
	r.mu.Unlock()
	for _, p := range all {
		r.stopPod(p, "runner stopping")
	}
	// Every pod context derives from podCtx: cancelling it also unblocks pods that report a
	// state change now that no reconciler reads the event channel any more.
	r.stopPods()
	r.stopping.Wait()
	r.log.Info("pod runner stopped")
}

// PodInfo describes a local pod, for tests and the sandbox.
type PodInfo struct {
	Namespace   string
	Name        string
	Deployment  string
	Labels      map[string]string
	Ready       bool
	Terminating bool
	PIDs        []int
	Waiting     string // why it has not started, if it has not
	Restarts    int
}

// Pods lists the local pods, terminating ones included.
func (r *Runner) Pods() []PodInfo {
	r.mu.Lock()
	var all []*pod
	for _, ds := range r.deployments {
		all = append(all, ds.pods...)
	}
	term := slices.Collect(maps.Keys(r.terminating))
	r.mu.Unlock()
	var out []PodInfo
	for i, p := range append(all, term...) {
		info := PodInfo{Namespace: p.Namespace, Name: p.Name, Deployment: p.Deployment, Labels: p.Labels, Ready: p.Ready(), Terminating: i >= len(all), PIDs: p.PIDs()}
		p.mu.Lock()
		info.Waiting = p.waiting
		for _, c := range p.containers {
			info.Restarts += int(c.restarts.Load())
		}
		p.mu.Unlock()
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b PodInfo) int {
		return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

// stopPod stops p in the background; the caller has already removed it from its Deployment.
func (r *Runner) stopPod(p *pod, why string) {
	r.mu.Lock()
	r.terminating[p] = true
	r.mu.Unlock()
	p.log.Info("stopping pod", "reason", why)
	r.stopping.Go(func() {
		p.stop()
		r.mu.Lock()
		delete(r.terminating, p)
		r.mu.Unlock()
		p.log.Info("pod stopped")
	})
}

// allocPort returns a free loopback port not handed out before by this runner.
func (r *Runner) allocPort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		r.portsMu.Lock()
		taken := r.ports[port]
		r.ports[port] = true
		r.portsMu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port found")
}

// newPod prepares (but does not start) a replica of d.
func (r *Runner) newPod(d *appsv1.Deployment, hash string) (*pod, error) {
	name := fmt.Sprintf("%s-%s-%s", d.Name, hash, utilrand.String(5))
	labels := maps.Clone(d.Spec.Template.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	spec := *d.Spec.Template.Spec.DeepCopy()
	ports, err := NewPortMap(&spec, r.allocPort)
	if err != nil {
		return nil, err
	}
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	p := &pod{
		Namespace: d.Namespace, Name: name, Deployment: d.Name, Hash: hash, Labels: labels, Ports: ports,
		spec: spec, dir: filepath.Join(r.cfg.RunDir, "pods", d.Namespace+"_"+name), r: r,
		log:     r.log.With("pod", d.Namespace+"/"+name),
		created: time.Now(),
	}
	p.notify = func() { r.trigger(key) }
	return p, nil
}

// trigger asks the Deployment reconciler to look at key again (a pod's state changed).
func (r *Runner) trigger(key types.NamespacedName) {
	obj := &appsv1.Deployment{}
	obj.Namespace, obj.Name = key.Namespace, key.Name
	select {
	case r.events <- event.GenericEvent{Object: obj}:
	case <-r.podCtx.Done():
	}
}

// containerOutput opens the container's log file (and the prefixed shared output).
func (r *Runner) containerOutput(p *pod, container string) (io.Writer, func(), error) {
	f, err := os.OpenFile(filepath.Join(p.dir, container+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if r.cfg.PodOutput == nil {
		return f, func() { _ = f.Close() }, nil
	}
	pw := &prefixWriter{mu: &r.outMu, w: r.cfg.PodOutput, prefix: "[" + p.Namespace + "/" + p.Name + "/" + container + "] "}
	return io.MultiWriter(f, pw), func() { pw.flush(); _ = f.Close() }, nil
}

// templateHash is the pod-template hash of a Deployment's template, like the deployment
// controller's pod-template-hash label.
func templateHash(t *corev1.PodTemplateSpec) string {
	h := fnv.New32a()
	b, _ := json.Marshal(t)
	_, _ = h.Write(b)
	return utilrand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// runnable says why a pod template cannot run locally (nil = it can).
func (r *Runner) runnable(spec *corev1.PodSpec) error {
	if len(spec.InitContainers) > 0 {
		return errors.New("init containers are not supported by the local pod runner")
	}
	for _, c := range spec.Containers {
		if len(c.Command) > 0 {
			return fmt.Errorf("container %s sets a command; the local pod runner only runs the operator binary (image %v, no command)", c.Name, r.cfg.Images)
		}
		if !slices.Contains(r.cfg.Images, c.Image) {
			return fmt.Errorf("container %s uses image %q; the local pod runner can only run the operator image %v (custom images need a real cluster)", c.Name, c.Image, r.cfg.Images)
		}
	}
	return nil
}

// cacheSource reads Secrets and ConfigMaps from the runner's cache.
type cacheSource struct{ c client.Client }

func (s cacheSource) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	var o corev1.Secret
	return &o, s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &o)
}

func (s cacheSource) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	var o corev1.ConfigMap
	return &o, s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &o)
}
