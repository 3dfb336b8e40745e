// Package manager is the "manager" subcommand: the controller-runtime manager that runs the
// ResendWebhook controller.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
)

const summary = "Run the operator (controller manager)"

// Command is the "manager" subcommand.
var Command = cli.Command{Name: "manager", Summary: summary, Run: run}

// Client-side rate limits: with 1000 webhooks a cold start applies ~4000 objects, which
// client-go's defaults (5/s) would stretch to minutes.
const (
	DefaultQPS   = 100
	DefaultBurst = 200
)

// LeaderElectionID is the Lease the manager replicas compete for.
const LeaderElectionID = "resend-webhook-operator.webhooks.resend-operator.dev"

// Options configure Run.
type Options struct {
	// MetricsBindAddress serves /metrics ("0" disables).
	MetricsBindAddress string
	// MetricsInsecure serves /metrics over plain HTTP without authentication (local use). By
	// default it is HTTPS (a self-signed certificate unless MetricsCertDir has tls.crt and
	// tls.key) and every request needs a bearer token the API server authenticates
	// (TokenReview) and authorizes for GET /metrics (SubjectAccessReview).
	MetricsInsecure bool
	// MetricsCertDir holds tls.crt and tls.key of the metrics endpoint (e.g. from cert-manager);
	// empty: a self-signed certificate generated at start.
	MetricsCertDir string
	// HealthProbeBindAddress serves /healthz and /readyz ("0" disables).
	HealthProbeBindAddress string
	// LeaderElect makes only one replica reconcile at a time.
	LeaderElect bool
	// LeaderElectionNamespace holds the Lease; empty = the namespace the pod runs in.
	LeaderElectionNamespace string
	// WatchNamespaces restricts the operator to these namespaces; empty = all.
	WatchNamespaces []string
	// Controller options (image, status refresh period, …).
	Controller controllers.Options
	// Logger; nil logs JSON to stdout.
	Logger *slog.Logger
	// OnStarted, when set, is called once the manager's caches are synced (for tests).
	OnStarted func(ctrl.Manager)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := cli.NewFlagSet("manager", summary, stdout)
	var (
		o          Options
		kubeconfig string
		namespaces cli.StringList
	)
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8443", "address of the metrics endpoint (\"0\" disables it)")
	metricsSecure := fs.Bool("metrics-secure", true, "serve metrics over HTTPS to callers the API server authenticates and authorizes for GET /metrics (false: plain HTTP, no authentication)")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "directory with tls.crt and tls.key for the metrics endpoint (default: a self-signed certificate)")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (\"0\" disables it)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "elect a leader so only one replica reconciles")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster config)")
	fs.Var(&namespaces, "watch-namespaces", "comma-separated namespaces to watch (default: all)")
	fs.StringVar(&o.Controller.Image, "image", "", "default image of receiver and worker pods (the operator's own image)")
	fs.DurationVar(&o.Controller.StatusRefresh, "status-refresh", controllers.DefaultStatusRefresh, "how often each webhook is checked without an event: Redis reachability, queue figures and metrics, objects in the way")
	fs.DurationVar(&o.Controller.QueueStatusInterval, "queue-status-interval", controllers.DefaultQueueStatusInterval, "least time between two status writes of a webhook that only update queue figures; also how often Redis durability settings are read")
	fs.Float64Var(&o.Controller.QueueStatusWriteBudget, "queue-status-write-budget", controllers.DefaultQueueStatusWriteBudget, "figure-only status writes per second allowed across all webhooks (token bucket)")
	var hosts, prefixes cli.StringList
	fs.Var(&hosts, controllers.FlagAllowedIngressHosts, "comma-separated Ingress host patterns webhooks may use: exact hosts or *.domain (any host below it); default: any host")
	fs.Var(&prefixes, controllers.FlagAllowedIngressAnnotationPrefixes, "comma-separated prefixes every spec.ingress.annotations key must start with; default: any key")
	fs.IntVar(&o.Controller.MaxConcurrentReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "ResendWebhooks reconciled in parallel")
	fs.StringVar(&o.Controller.Resend.APIURL, "resend-api-url", resendapi.DefaultBaseURL, "Resend's API, for webhooks with spec.resend (a simulator in tests and the sandbox)")
	fs.DurationVar(&o.Controller.Resend.SyncInterval, "resend-sync-interval", controllers.DefaultResendSyncInterval, "how often the state of each webhook registered at Resend is read (a spec change reads at once)")
	qps := fs.Float64("kube-api-qps", DefaultQPS, "client-side limit of API requests per second")
	burst := fs.Int("kube-api-burst", DefaultBurst, "client-side burst of API requests")
	if err := cli.Parse(fs, args, getenv); err != nil {
		return err
	}
	if o.Controller.Image == "" {
		return errors.New("--image (or RWH_IMAGE) is required: the default receiver/worker image")
	}
	o.WatchNamespaces = namespaces
	o.MetricsInsecure = !*metricsSecure
	o.Controller.Policy = controllers.TenantPolicy{AllowedIngressHosts: hosts, AllowedIngressAnnotationPrefixes: prefixes}
	if err := o.Controller.Policy.Validate(); err != nil {
		return err
	}
	o.Logger = cli.Logger(stdout, "manager", slog.LevelInfo)
	cfg, err := restConfig(kubeconfig, getenv)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(*qps), *burst
	cfg.UserAgent = "resend-webhook-operator"
	return Run(ctx, cfg, o)
}

// restConfig loads --kubeconfig, then $KUBECONFIG, then the in-cluster config.
func restConfig(path string, getenv func(string) string) (*rest.Config, error) {
	if path == "" {
		path = getenv("KUBECONFIG")
	}
	if path == "" {
		return rest.InClusterConfig()
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// Scheme holds the kinds the operator reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration of built-in types: cannot fail
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	// HTTPRoute and Gateway (spec.gateway); used only where the cluster serves them.
	if err := gatewayv1.Install(s); err != nil {
		panic(err)
	}
	return s
}

// Run runs the manager with the ResendWebhook controller against cfg until ctx is done.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = cli.Logger(io.Discard, "manager", slog.LevelInfo)
	}
	logger := logr.FromSlogHandler(log.Handler())
	setGlobalLoggers(log, logger)

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        Scheme(),
		Logger:                        logger,
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOptions(o.WatchNamespaces),
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if _, err := controllers.SetupWithManager(mgr, o.Controller); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("cache", cacheSynced(mgr)); err != nil {
		return err
	}
	if o.OnStarted != nil {
		if err := mgr.Add(onStarted{mgr: mgr, fn: o.OnStarted}); err != nil {
			return err
		}
	}
	log.Info("starting manager", "watchNamespaces", o.WatchNamespaces, "image", o.Controller.Image, "leaderElect", o.LeaderElect,
		"metrics", o.MetricsBindAddress, "metricsSecure", !o.MetricsInsecure, "policy", o.Controller.Policy,
		"resendAPI", o.Controller.Resend.APIURL, "resendSyncInterval", o.Controller.Resend.SyncInterval.String())
	return mgr.Start(ctx)
}

// metricsOptions serve /metrics like kubebuilder's scaffold: HTTPS, and only to callers the API
// server authenticates and authorizes (the metrics-reader ClusterRole in config/rbac).
func metricsOptions(o Options) metricsserver.Options {
	if o.MetricsInsecure {
		return metricsserver.Options{BindAddress: o.MetricsBindAddress}
	}
	return metricsserver.Options{
		BindAddress:    o.MetricsBindAddress,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        o.MetricsCertDir,
		// HTTP/2 off: it exposes the endpoint to HTTP/2 stream attacks (CVE-2023-44487,
		// CVE-2023-39325) and Prometheus does not need it.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
}

// cacheOptions limits the cache to the watched namespaces and the owned kinds to objects the
// operator labelled, so memory does not grow with unrelated Deployments and Services (Secrets
// are watched as metadata only, see controllers.SetupWithManager). Managed fields, a large
// part of every object, are dropped from the cache.
func cacheOptions(namespaces []string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagerName})
	opts := cache.Options{
		ByObject:         map[client.Object]cache.ByObject{},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &networkingv1.Ingress{}, &policyv1.PodDisruptionBudget{}, &autoscalingv2.HorizontalPodAutoscaler{}} {
		opts.ByObject[obj] = cache.ByObject{Label: managed}
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// cacheSynced is ready once the informers have synced.
func cacheSynced(mgr ctrl.Manager) healthz.Checker {
	return func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches not synced")
		}
		return nil
	}
}

var globalLoggers sync.Once

// setGlobalLoggers routes the libraries' package-level loggers (controller-runtime, klog,
// go-redis) to log, once per process: they are globals that running goroutines read, so a
// second Run in the same process (tests) keeps the first setting.
func setGlobalLoggers(log *slog.Logger, logger logr.Logger) {
	globalLoggers.Do(func() {
		ctrl.SetLogger(logger)
		klog.SetLogger(logger)
		// go-redis logs every failed dial to stderr; QueueReachable already reports it.
		redis.SetLogger(redisLog{log})
	})
}

// redisLog sends go-redis' internal messages to the debug log.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}

// onStarted calls fn once the caches are synced.
type onStarted struct {
	mgr ctrl.Manager
	fn  func(ctrl.Manager)
}

func (s onStarted) Start(ctx context.Context) error {
	if !s.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil
	}
	s.fn(s.mgr)
	return nil
}

func (onStarted) NeedLeaderElection() bool { return false }
