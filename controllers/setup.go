package controllers

import (
	"context"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// Least privilege: read the webhooks and update only their status (Status().Update); manage
// the child kinds with server-side apply (create + patch; never update) and delete the optional
// ones the spec drops (the Service is always present, so it is never deleted); read Secrets (to
// validate signing secrets and reach Redis; the watch is metadata only, values are read with
// get); emit events.
// +kubebuilder:rbac:groups=webhooks.resend-operator.dev,resources=resendwebhooks,verbs=get;list;watch
// +kubebuilder:rbac:groups=webhooks.resend-operator.dev,resources=resendwebhooks/status,verbs=update
// blockOwnerDeletion on the children needs this where OwnerReferencesPermissionEnforcement is on:
// +kubebuilder:rbac:groups=webhooks.resend-operator.dev,resources=resendwebhooks/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// FieldManager is the one server-side apply field manager of the operator.
const FieldManager = "resend-webhook-operator"

// ControllerName names the controller in logs, metrics and events.
const ControllerName = "resendwebhook"

// secretIndex indexes ResendWebhooks by the names of the Secrets they reference.
const secretIndex = ".spec.secretNames"

// Options configure the controller.
type Options struct {
	// Image is the default receiver/worker image.
	Image string
	// StatusRefresh is how often each webhook is looked at again without an event: Redis
	// PING, queue figures (and their metrics), foreign objects in the way (default 30s).
	StatusRefresh time.Duration
	// QueueStatusInterval is the least time between two status writes of a webhook that carry
	// only new queue figures (default 60s). It is also how often Redis' durability settings
	// are read.
	QueueStatusInterval time.Duration
	// QueueStatusWriteBudget is how many figure-only status writes per second all webhooks
	// together may make, a token bucket with a burst of the same size (default 10).
	QueueStatusWriteBudget float64
	// RedisTimeout bounds one PING or queue inspection (default 2s).
	RedisTimeout time.Duration
	// MaxConcurrentReconciles (default 4).
	MaxConcurrentReconciles int
	// Policy restricts the Ingress hosts and annotations tenants may ask for.
	Policy TenantPolicy
	// SkipNameValidation allows several managers in one process (tests restarting the manager).
	SkipNameValidation bool
	// Resend configures the Resend integration (spec.resend).
	Resend ResendOptions
}

// Defaults of Options.
const (
	DefaultStatusRefresh           = 30 * time.Second
	DefaultQueueStatusInterval     = 60 * time.Second
	DefaultQueueStatusWriteBudget  = 10
	DefaultRedisTimeout            = 2 * time.Second
	DefaultMaxConcurrentReconciles = 4
)

func (o *Options) defaults() {
	if o.StatusRefresh <= 0 {
		o.StatusRefresh = DefaultStatusRefresh
	}
	if o.QueueStatusInterval <= 0 {
		o.QueueStatusInterval = DefaultQueueStatusInterval
	}
	if o.QueueStatusWriteBudget <= 0 {
		o.QueueStatusWriteBudget = DefaultQueueStatusWriteBudget
	}
	if o.RedisTimeout <= 0 {
		o.RedisTimeout = DefaultRedisTimeout
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
}

// SetupWithManager registers the ResendWebhook controller, its field index and watches with mgr.
// The returned Reconciler's Close releases its Redis connections (the manager does it on stop).
func SetupWithManager(mgr ctrl.Manager, opts Options) (*Reconciler, error) {
	opts.defaults()
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	resend, err := newResendIntegration(opts.Resend)
	if err != nil {
		return nil, err
	}
	r := &Reconciler{
		client:    mgr.GetClient(),
		apiReader: mgr.GetAPIReader(),
		recorder:  mgr.GetEventRecorder(ControllerName),
		opts:      opts,
		queues:    newQueueMonitors(opts.RedisTimeout),
		applied:   newAppliedMemo(),
		secrets:   newSecretStore(mgr.GetClient(), mgr.GetAPIReader()),
		figures:   newFigureWrites(opts.QueueStatusInterval, opts.QueueStatusWriteBudget),
		resend:    resend,
	}
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.ResendWebhook{}, secretIndex, func(o client.Object) []string {
		return referencedSecrets(o.(*v1alpha1.ResendWebhook))
	}); err != nil {
		return nil, err
	}
	// Close Redis clients when the manager stops.
	if err := mgr.Add(closeOnStop{r}); err != nil {
		return nil, err
	}
	c, err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// Only spec changes (and create/delete) reconcile: our own status writes must not
		// trigger the next reconcile, which would re-read changing queue figures and write
		// again in a tight loop. The periodic RequeueAfter keeps the figures current.
		For(&v1alpha1.ResendWebhook{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, rotationRequested))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		// Metadata only: every Secret of the cluster passes through this watch, and their
		// values are read directly, only for the few a webhook references.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.webhooksForSecret)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles, SkipNameValidation: new(opts.SkipNameValidation)}).
		Build(r)
	if err != nil {
		return nil, err
	}
	// The Gateway API's and KEDA's kinds are owned like the ones above, once the cluster serves
	// them (looked up again every StatusRefresh while it does not).
	owner := handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &v1alpha1.ResendWebhook{}, handler.OnlyControllerOwner())
	r.optional = newOptionalAPIs(mgr, opts.StatusRefresh, func(obj client.Object) error {
		return c.Watch(source.Kind(mgr.GetCache(), obj, owner))
	})
	return r, nil
}

// referencedSecrets are the names of every Secret the webhook reads or mounts.
func referencedSecrets(rw *v1alpha1.ResendWebhook) []string {
	return slices.Sorted(maps.Keys(referencedKeys(rw)))
}

// webhooksForSecret maps a Secret event to the webhooks in its namespace that reference it.
func (r *Reconciler) webhooksForSecret(ctx context.Context, s client.Object) []reconcile.Request {
	var list v1alpha1.ResendWebhookList
	if err := r.client.List(ctx, &list, client.InNamespace(s.GetNamespace()), client.MatchingFields{secretIndex: s.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing webhooks for secret", "secret", s.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, rw := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rw.Namespace, Name: rw.Name}}
	}
	return reqs
}

// closeOnStop is a manager Runnable that closes the Reconciler's Redis clients at shutdown.
type closeOnStop struct{ r *Reconciler }

func (c closeOnStop) Start(ctx context.Context) error {
	<-ctx.Done()
	c.r.Close()
	return nil
}

// NeedLeaderElection is false so clients are closed on every replica.
func (closeOnStop) NeedLeaderElection() bool { return false }
