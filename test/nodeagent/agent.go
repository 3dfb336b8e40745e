// Package nodeagent is a minimal kubelet for the local sandbox and tests: it registers a Node
// with a Kubernetes API server and runs the Pods the real scheduler binds to it as local
// processes, while Kubernetes' own kube-controller-manager does Deployments, ReplicaSets,
// garbage collection, EndpointSlices and PDBs (package test/cluster starts them).
//
// What it does, as a kubelet would: it keeps the Node and its Lease fresh; gives every pod an
// IP of the node's podCIDR and reports it in status.podIP; materialises secret, configMap,
// projected and emptyDir volumes with the atomic "..data" swap and refreshes them when the
// objects change; runs each container as a process of the executable its image maps to;
// probes readiness and liveness; restarts per restartPolicy with backoff; writes container
// statuses and the Ready/ContainersReady conditions; stops a deleted pod with SIGTERM, its
// grace period and SIGKILL, then deletes the Pod object for good; and serves container logs on
// the node's kubelet endpoint so that `kubectl logs` works. Besides, it serves every Ingress as
// a reverse proxy that routes through the Services' EndpointSlices.
//
// The sandbox's pod network: the API server refuses loopback addresses in EndpointSlices, so
// pod IPs come from an ordinary range (default a random 10.X.Y.0/24), and each pod's
// processes listen on its loopback twin, the same address with 127 as the first octet
// (10.3.7.5 → 127.3.7.5; any 127.x.y.z binds on Linux without setup). The agent's probes and
// Ingress proxy dial the twin; from the host, reach a pod the same way (LoopbackIP). A
// container argument or env value that is a listen address without a host (":8080",
// "0.0.0.0:8080", "[::]:8080") is rewritten to the twin ("127.3.7.5:8080"), and one at or
// under a volume's mountPath to the directory the volume is materialised in. Nothing else is
// isolated: processes run as the agent's user and share its filesystem and network.
package nodeagent

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Config configures an Agent.
type Config struct {
	// RestConfig reaches the API server; required.
	RestConfig *rest.Config
	// KubeletTLS serves the kubelet endpoint (container logs): a certificate for NodeIP that
	// the API server trusts, and verification of the API server's client certificate; required
	// (cluster.Cluster.Kubelet.ServerTLS makes one).
	KubeletTLS *tls.Config
	// Images maps a container image to the executable that runs it, e.g.
	// "resend-webhook-operator:dev" → "bin/resend-webhook-operator"; required. A pod with any
	// other image stays Pending with reason ErrImagePull.
	Images map[string]string
	// RunDir holds one directory per pod: its volumes and container logs; required.
	RunDir string
	// NodeName is the Node's name; default "sandbox-node".
	NodeName string
	// NodeIP is the Node's InternalIP, where the kubelet endpoint listens; default 127.0.0.1.
	NodeIP string
	// PodCIDR is where pod IPs come from: an IPv4 range of at least 4 addresses within one
	// /8 other than 127.0.0.0/8; default a random 10.X.Y.0/24, so that agents in concurrent
	// test processes do not collide. Pods listen on the loopback twins (LoopbackIP).
	PodCIDR netip.Prefix
	// IngressAddr is where the Ingress proxy listens (127.0.0.1:0 = a free port); "" = no proxy.
	IngressAddr string
	// Capacity is the Node's capacity and allocatable; default 16 CPUs, 32Gi memory, 110 pods
	// (room for many small pods: the sandbox enforces no resource limits).
	Capacity corev1.ResourceList
	// MaxGracePeriod caps a pod's termination grace period; default 10s.
	MaxGracePeriod time.Duration
	// PodOutput, when set, also receives every container's output line by line, each line
	// prefixed "[namespace/pod/container] " (one stream of everything, e.g. the sandbox's
	// pods.log); kubectl logs reads the per-container files either way.
	PodOutput io.Writer
	// Log receives the agent's logs; nil discards them.
	Log *slog.Logger
}

const (
	// fieldManager and the events' reporting controller.
	agentName = "nodeagent"
	// backoff bounds for container restarts and retries (the kubelet's are 10 s…5 min; the
	// sandbox wants to converge quickly).
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// Agent is a running node agent. Create it with Start; stop it with Stop.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	client   client.Client // reads from the cache (pods of this node, Secrets, ConfigMaps, …)
	api      client.Reader // uncached, for the Node and its Lease
	recorder recorder.EventRecorder
	ips      *ipPool

	changed  chan event.GenericEvent // pods whose local state changed, for reconcilePod
	stopMgr  context.CancelFunc
	done     chan struct{} // closed when the manager, servers and node loop have stopped
	stopping chan struct{} // closed by Stop: workers then write nothing more to the API

	mu      sync.Mutex
	workers map[types.NamespacedName]*podWorker
	outMu   sync.Mutex // serialises the lines written to cfg.PodOutput

	kubeletAddr string
	ingressAddr string
}

// Start registers the Node, starts the pod and Ingress controllers, the kubelet endpoint and
// the Ingress proxy, and returns once the caches are synced.
func Start(ctx context.Context, cfg Config) (_ *Agent, err error) {
	if cfg.RestConfig == nil || cfg.KubeletTLS == nil || len(cfg.Images) == 0 || cfg.RunDir == "" {
		return nil, errors.New("nodeagent: RestConfig, KubeletTLS, Images and RunDir are required")
	}
	cfg.NodeName = cmp.Or(cfg.NodeName, "sandbox-node")
	cfg.NodeIP = cmp.Or(cfg.NodeIP, "127.0.0.1")
	if !cfg.PodCIDR.IsValid() {
		cfg.PodCIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), 0}), 24)
	}
	if p := cfg.PodCIDR; !p.Addr().Is4() || p.Addr().IsLoopback() || p.Bits() < 8 || p.Bits() > 30 {
		return nil, fmt.Errorf("nodeagent: PodCIDR %s must be an IPv4 range of at least 4 addresses within one /8, not in 127.0.0.0/8", p)
	}
	if cfg.Capacity == nil {
		cfg.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"),
			corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")}
	}
	if cfg.MaxGracePeriod <= 0 {
		cfg.MaxGracePeriod = 10 * time.Second
	}
	cfg.Log = cmp.Or(cfg.Log, slog.New(slog.DiscardHandler))
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg.RestConfig, ctrl.Options{
		Scheme: scheme,
		Logger: logr.FromSlogHandler(cfg.Log.Handler()),
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName)},
		}},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Log, client: mgr.GetClient(), api: mgr.GetAPIReader(),
		recorder: mgr.GetEventRecorder(agentName), ips: newIPPool(cfg.PodCIDR),
		done: make(chan struct{}), stopping: make(chan struct{}), workers: map[types.NamespacedName]*podWorker{},
		changed: make(chan event.GenericEvent, 256),
	}
	// A changed Secret or ConfigMap may feed any pod of its namespace (volumes, env): reconcile
	// them all; a pod whose inputs did not change rewrites nothing.
	podsOfNamespace := handler.EnqueueRequestsFromMapFunc(a.podsIn)
	err = ctrl.NewControllerManagedBy(mgr).Named("nodeagent-pods").For(&corev1.Pod{}).
		Watches(&corev1.Secret{}, podsOfNamespace).Watches(&corev1.ConfigMap{}, podsOfNamespace).
		WatchesRawSource(source.Channel(a.changed, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(reconcile.Func(a.reconcilePod))
	if err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range listeners {
				_ = ln.Close()
			}
		}
	}()
	addServer := func(ln net.Listener, h http.Handler) error {
		listeners = append(listeners, ln)
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return serve(ctx, srv, ln) }))
	}
	kubeletLn, err := tls.Listen("tcp", net.JoinHostPort(cfg.NodeIP, "0"), cfg.KubeletTLS)
	if err != nil {
		return nil, fmt.Errorf("nodeagent: kubelet endpoint: %w", err)
	}
	a.kubeletAddr = kubeletLn.Addr().String()
	if err = addServer(kubeletLn, a.kubeletHandler()); err != nil {
		return nil, err
	}
	if cfg.IngressAddr != "" {
		ln, err := net.Listen("tcp", cfg.IngressAddr)
		if err != nil {
			return nil, fmt.Errorf("nodeagent: ingress listen on %s: %w", cfg.IngressAddr, err)
		}
		a.ingressAddr = ln.Addr().String()
		if err := addServer(ln, newIngressProxy(a)); err != nil {
			return nil, err
		}
		err = ctrl.NewControllerManagedBy(mgr).Named("nodeagent-ingress").For(&networkingv1.Ingress{}).
			Complete(reconcile.Func(a.reconcileIngress))
		if err != nil {
			return nil, fmt.Errorf("nodeagent: %w", err)
		}
		// The proxy's reads: informers started with the manager, not on the first request.
		for _, obj := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}} {
			if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
				return nil, fmt.Errorf("nodeagent: %w", err)
			}
		}
	}
	if err := a.registerNode(ctx); err != nil {
		return nil, err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { a.keepNodeFresh(ctx); return nil })); err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopMgr = cancel
	go func() {
		defer close(a.done)
		if err := mgr.Start(mctx); err != nil {
			a.log.Error("node agent manager stopped", "error", err)
		}
	}()
	syncCtx, cancelSync := context.WithTimeout(ctx, time.Minute)
	defer cancelSync()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		a.Stop()
		return nil, errors.New("nodeagent: caches did not sync within a minute")
	}
	a.log.Info("node agent started", "node", cfg.NodeName, "podCIDR", cfg.PodCIDR.String(),
		"kubelet", a.kubeletAddr, "ingress", a.ingressAddr, "images", slices.Sorted(maps.Keys(cfg.Images)))
	return a, nil
}

// serve serves srv on ln until ctx ends, then shuts it down (streams get 2 s, then are cut).
func serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// NodeName is the registered Node's name.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// PodCIDR is the range pod IPs come from.
func (a *Agent) PodCIDR() netip.Prefix { return a.cfg.PodCIDR }

// IngressAddr is the Ingress proxy's host:port ("" without a proxy).
func (a *Agent) IngressAddr() string { return a.ingressAddr }

// KubeletAddr is the kubelet endpoint's host:port (the Node's daemon endpoint).
func (a *Agent) KubeletAddr() string { return a.kubeletAddr }

// Stop stops the controllers and servers, then every pod's processes (SIGTERM, SIGKILL after
// the grace period) and waits for all of it. Pod objects are left as they are, as when a
// kubelet stops; the Node turns NotReady once its Lease expires.
func (a *Agent) Stop() {
	close(a.stopping)
	a.stopMgr()
	<-a.done
	a.mu.Lock()
	workers := slices.Collect(maps.Values(a.workers))
	a.mu.Unlock()
	for _, w := range workers {
		w.terminate(a.cfg.MaxGracePeriod)
	}
	for _, w := range workers {
		<-w.done
	}
	a.log.Info("node agent stopped", "node", a.cfg.NodeName)
}

func (a *Agent) isStopping() bool { return isClosed(a.stopping) }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// worker returns the worker of a pod, nil if none.
func (a *Agent) worker(namespace, name string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workers[types.NamespacedName{Namespace: namespace, Name: name}]
}

// echo returns what copies one container's output lines to Config.PodOutput; nil without it.
func (a *Agent) echo(pod types.NamespacedName, container string) func(line []byte) {
	if a.cfg.PodOutput == nil {
		return nil
	}
	prefix := "[" + pod.String() + "/" + container + "] "
	return func(line []byte) {
		a.outMu.Lock()
		defer a.outMu.Unlock()
		_, _ = fmt.Fprintf(a.cfg.PodOutput, "%s%s\n", prefix, line)
	}
}

// podsIn lists this node's pods in obj's namespace.
func (a *Agent) podsIn(ctx context.Context, obj client.Object) []reconcile.Request {
	var pods corev1.PodList
	if err := a.client.List(ctx, &pods, client.InNamespace(obj.GetNamespace())); err != nil {
		a.log.Warn("listing pods", "namespace", obj.GetNamespace(), "error", err)
		return nil
	}
	reqs := make([]reconcile.Request, len(pods.Items))
	for i := range pods.Items {
		reqs[i].NamespacedName = client.ObjectKeyFromObject(&pods.Items[i])
	}
	return reqs
}

// ipPool hands out the IPs of the node's podCIDR in turn, so a freed IP is reused late.
type ipPool struct {
	mu    sync.Mutex
	base  uint32 // the network address
	size  uint32
	next  uint32 // offset of the next candidate
	inUse map[netip.Addr]bool
}

func newIPPool(p netip.Prefix) *ipPool {
	b := p.Masked().Addr().As4()
	return &ipPool{base: binary.BigEndian.Uint32(b[:]), size: 1 << (32 - p.Bits()), inUse: map[netip.Addr]bool{}}
}

// allocate returns a free IP whose loopback twin can bind the pod's container ports: another
// process (e.g. an agent of a concurrent test) may be using an address of the range.
func (p *ipPool) allocate(containers []corev1.Container) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.size {
		off := p.next
		p.next = (p.next + 1) % p.size
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], p.base+off)
		ip := netip.AddrFrom4(b)
		// Not the network address, the gateway's (.1) or the broadcast address.
		if off > 1 && off < p.size-1 && !p.inUse[ip] && portsFree(ip, containers) {
			p.inUse[ip] = true
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("nodeagent: no free pod IP left in the node's podCIDR")
}

func (p *ipPool) release(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inUse, ip)
}

// LoopbackIP is the address a pod's processes listen on for its IP: the same address with 127
// as the first octet.
func LoopbackIP(podIP netip.Addr) netip.Addr {
	b := podIP.As4()
	b[0] = 127
	return netip.AddrFrom4(b)
}

// portsFree reports whether every declared TCP container port can be bound on the pod IP's
// loopback twin right now.
func portsFree(podIP netip.Addr, containers []corev1.Container) bool {
	ip := LoopbackIP(podIP)
	for _, c := range containers {
		for _, port := range c.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(int(port.ContainerPort))))
			if err != nil {
				return false
			}
			_ = ln.Close()
		}
	}
	return true
}
