package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
)

// With spec.resend the operator registers the endpoint at Resend, owns the signing Secret and
// rotates it: the finalizer (patch on resendwebhooks), and create + update of the signing
// Secret it writes (update with the resourceVersion it read, so it never overwrites a change it
// did not see). The API key Secret is only read (get, already granted).
// +kubebuilder:rbac:groups=webhooks.resend-operator.dev,resources=resendwebhooks,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;update

// rotationRequested lets a change of the rotate-signing-secret annotation through the
// generation filter: it is metadata, and the rotation should not wait for the next refresh.
var rotationRequested = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetAnnotations()[v1alpha1.AnnotationRotateSigningSecret] != e.ObjectNew.GetAnnotations()[v1alpha1.AnnotationRotateSigningSecret]
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// ResendFinalizer holds a ResendWebhook with spec.resend until its webhook at Resend is removed
// (deletionPolicy Delete) or released (Retain).
const ResendFinalizer = "webhooks.resend-operator.dev/resend"

// Defaults of ResendOptions.
const (
	DefaultResendSyncInterval  = 10 * time.Minute
	DefaultDualSigningWindow   = 24 * time.Hour
	DefaultMinRotationInterval = 3 * time.Minute

	// maxResendBackoff caps the wait before retrying a failed sync or deletion.
	maxResendBackoff = 5 * time.Minute
	// resendSyncTimeout bounds all Resend calls of one sync.
	resendSyncTimeout = 30 * time.Second
)

// ResendOptions configure the Resend integration.
type ResendOptions struct {
	// APIURL is Resend's API (--resend-api-url); default resendapi.DefaultBaseURL.
	APIURL string
	// SyncInterval is how often the state of each registered webhook is read from Resend
	// (--resend-sync-interval); default 10m. A spec change or a pending action reads at once.
	SyncInterval time.Duration
	// DualSigningWindow is how long receivers keep accepting the secret a rotation replaced:
	// Resend signs with both for 24 h (the default).
	DualSigningWindow time.Duration
	// MinRotationInterval spaces rotations, so the kubelet has put the secret that keeps
	// verifying into every receiver before Resend stops signing with the one before; default 3m.
	MinRotationInterval time.Duration
}

func (o *ResendOptions) defaults() {
	o.APIURL = cmp.Or(o.APIURL, resendapi.DefaultBaseURL)
	o.SyncInterval = cmp.Or(o.SyncInterval, DefaultResendSyncInterval)
	o.DualSigningWindow = cmp.Or(o.DualSigningWindow, DefaultDualSigningWindow)
	o.MinRotationInterval = cmp.Or(o.MinRotationInterval, DefaultMinRotationInterval)
}

// Manager metrics of the integration. Series are deleted when the webhook goes.
var (
	resendEnabledGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwh_resend_webhook_enabled",
		Help: "1 while the webhook registered at Resend is enabled, 0 while Resend has it disabled (spec.resend only).",
	}, []string{"namespace", "name"})
	resendDisabledTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rwh_resend_webhook_disabled_total",
		Help: "Times the operator found the webhook disabled by Resend after repeated failed deliveries (events Resend had for it meanwhile were not delivered).",
	}, []string{"namespace", "name"})
)

func init() { crmetrics.Registry.MustRegister(resendEnabledGauge, resendDisabledTotal) }

// resendIntegration is the Resend client and what the operator remembers of each webhook.
type resendIntegration struct {
	api    *resendapi.API
	opts   ResendOptions
	mu     sync.Mutex
	synced map[types.NamespacedName]*resendSynced
}

// resendSynced is what the last successful sync established. While it still describes the
// spec, the Secret is intact and the sync interval has not passed, a reconcile calls nobody.
type resendSynced struct {
	uid       types.UID
	want      string // resendWant.fingerprint()
	webhookID string
	state     string    // resendapi.StatusEnabled / StatusDisabled
	readAt    time.Time // last read of the webhook at Resend
	failures  int       // consecutive failed syncs, for the backoff
	retryAt   time.Time // after a failure: no call before (unless the spec changes)
}

func newResendIntegration(opts ResendOptions) (*resendIntegration, error) {
	opts.defaults()
	api, err := resendapi.New(resendapi.Options{BaseURL: opts.APIURL})
	if err != nil {
		return nil, err
	}
	return &resendIntegration{api: api, opts: opts, synced: map[types.NamespacedName]*resendSynced{}}, nil
}

func (ri *resendIntegration) memo(key types.NamespacedName) *resendSynced {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if m := ri.synced[key]; m != nil {
		c := *m
		return &c
	}
	return nil
}

func (ri *resendIntegration) remember(key types.NamespacedName, m *resendSynced) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.synced[key] = m
}

// forget drops the memory and the metric series of a webhook.
func (ri *resendIntegration) forget(key types.NamespacedName) {
	ri.mu.Lock()
	delete(ri.synced, key)
	ri.mu.Unlock()
	resendEnabledGauge.DeleteLabelValues(key.Namespace, key.Name)
	resendDisabledTotal.DeleteLabelValues(key.Namespace, key.Name)
}

// registration is the outcome of the Resend step of one reconcile.
type registration struct {
	cond   metav1.Condition
	status *v1alpha1.ResendStatus
	// requeue, when > 0, asks for the next reconcile no later than this (retry-after, backoff,
	// the end of a dual-signing window, the next state read).
	requeue time.Duration
}

// requeueAfter is the reconcile period, shortened when the Resend step needs an earlier turn.
func requeueAfter(period time.Duration, reg *registration) time.Duration {
	if reg != nil && reg.requeue > 0 && reg.requeue < period {
		return reg.requeue
	}
	return period
}

// resendWant is what the webhook at Resend and the signing Secret should be.
type resendWant struct {
	endpoint   string
	events     []string // sorted
	secretName string
	secretKey  string
	apiKey     v1alpha1.APIKeySecretRef
	autoEnable bool
}

func (w resendWant) fingerprint() string {
	return strings.Join([]string{w.endpoint, strings.Join(w.events, ","), w.secretName, w.secretKey, w.apiKey.Name, w.apiKey.Key}, "\x00")
}

// wantedRegistration derives resendWant; the endpoint is spec.resend.endpoint or the public URL
// the Ingress gives ("" when there is none yet).
func wantedRegistration(rw *v1alpha1.ResendWebhook, publicURL string) resendWant {
	rw = rw.DeepCopy()
	rw.Default()
	r := rw.Spec.Resend
	events := make([]string, 0, len(rw.Spec.Events))
	for _, e := range rw.Spec.Events {
		events = append(events, string(e))
	}
	if len(events) == 0 { // Resend wants at least one type: "all" is every type it has
		events = slices.Clone(resendapi.EventTypes)
	}
	slices.Sort(events)
	return resendWant{
		endpoint:   cmp.Or(r.Endpoint, publicURL),
		events:     slices.Compact(events),
		secretName: rw.Spec.SigningSecret.Name,
		secretKey:  rw.SigningSecretKeys()[0],
		apiKey:     r.APIKeySecretRef,
		autoEnable: *r.AutoEnable,
	}
}

// Why a sync must call Resend now.
const (
	dueNothing  = ""
	dueFirst    = "not synced since the operator started or the spec changed"
	dueSecret   = "the signing Secret does not hold a valid secret"
	dueRotation = "a rotation was requested"
	dueRead     = "the sync interval passed"
	dueEnable   = "disabled at Resend and the receivers are ready again"
)

// syncDue says why Resend must be called now (dueNothing: the last sync still holds).
func syncDue(m *resendSynced, uid types.UID, want resendWant, sec signingSecret, rotation rotationState, ready bool, now time.Time, interval time.Duration) string {
	switch {
	case m == nil || m.uid != uid || m.want != want.fingerprint() || m.webhookID == "":
		return dueFirst
	case !sec.valid():
		return dueSecret
	case rotation.due(now):
		return dueRotation
	case m.state == resendapi.StatusDisabled && want.autoEnable && ready:
		return dueEnable
	case now.Sub(m.readAt) >= interval:
		return dueRead
	}
	return dueNothing
}

// seedMemo trusts the status written before a restart when it still describes the spec, so a
// restart does not read every webhook at once; the first read comes one interval later.
func seedMemo(rw *v1alpha1.ResendWebhook, want resendWant, now time.Time) *resendSynced {
	st := rw.Status.Resend
	c := meta.FindStatusCondition(rw.Status.Conditions, v1alpha1.ConditionRegistered)
	if st == nil || st.WebhookID == "" || c == nil || c.ObservedGeneration != rw.Generation ||
		(c.Reason != v1alpha1.ReasonRegistered && c.Reason != v1alpha1.ReasonDisabledByResend) ||
		st.Endpoint != displayURL(want.endpoint) || !slices.Equal(st.Events, want.events) {
		return nil
	}
	return &resendSynced{uid: rw.UID, want: want.fingerprint(), webhookID: st.WebhookID, state: st.State, readAt: now}
}

// receiversReady: the endpoint can answer (receivers available, and the Ingress or the
// HTTPRoute when there is one).
func receiversReady(rw *v1alpha1.ResendWebhook, obs observation) bool {
	switch {
	case deploymentCondition(v1alpha1.ConditionReceiverAvailable, obs.receiver).Status != metav1.ConditionTrue:
		return false
	case rw.Spec.Ingress != nil:
		return ingressCondition(obs.ingress).Status == metav1.ConditionTrue
	case rw.Spec.Gateway != nil:
		return routeCondition(rw, obs.route).Status == metav1.ConditionTrue
	}
	return true
}

// syncResend is the Resend step: register or adopt the webhook, keep endpoint and events in
// sync, keep the signing Secret equal to Resend's secret, rotate on request, re-enable a
// disabled endpoint. It returns nil without spec.resend.
func (r *Reconciler) syncResend(ctx context.Context, rw *v1alpha1.ResendWebhook, obs observation) *registration {
	key := client.ObjectKeyFromObject(rw)
	if rw.Spec.Resend == nil {
		r.detachResend(ctx, rw)
		return nil
	}
	if err := r.setResendFinalizer(ctx, rw, true); err != nil {
		return r.resendFailed(ctx, rw, v1alpha1.ReasonResendError, fmt.Sprintf("adding the finalizer: %v", err), time.Second)
	}
	want := wantedRegistration(rw, obs.url(rw))
	if want.endpoint == "" {
		return &registration{cond: *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonEndpointUnknown,
			"no endpoint to register yet: set spec.resend.endpoint, or spec.ingress or spec.gateway and wait for status.url"), status: rw.Status.Resend}
	}
	sec, err := r.readSigningSecret(ctx, rw, want)
	if err != nil {
		return r.resendFailed(ctx, rw, v1alpha1.ReasonSigningSecretError, fmt.Sprintf("reading signing Secret %q: %v", want.secretName, err), 2*time.Second)
	}
	if sec.obj != nil && !metav1.IsControlledBy(sec.obj, rw) {
		return r.resendFailed(ctx, rw, v1alpha1.ReasonNameConflict, fmt.Sprintf(
			"Secret %q exists and is not managed by this ResendWebhook: the operator writes the signing secret Resend issues into spec.signingSecret.name; delete that Secret or choose another name", want.secretName), 0)
	}
	now := time.Now()
	if sec, err = r.dropExpiredPrevious(ctx, rw, sec, now); err != nil {
		return r.resendFailed(ctx, rw, v1alpha1.ReasonSigningSecretError, fmt.Sprintf("removing the expired previous signing secret: %v", err), time.Second)
	}
	memo := r.resend.memo(key)
	if memo == nil {
		memo = seedMemo(rw, want, now)
	}
	rotation := r.rotationState(rw, sec)
	ready := receiversReady(rw, obs)
	due := syncDue(memo, rw.UID, want, sec, rotation, ready, now, r.resend.opts.SyncInterval)
	if memo != nil && memo.uid == rw.UID && memo.want == want.fingerprint() && now.Before(memo.retryAt) {
		return r.keepLastOutcome(rw, memo.retryAt.Sub(now))
	}
	if due == dueNothing {
		r.resend.remember(key, memo)
		return r.registered(rw, want, memo, sec, rotation, now)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("syncing with Resend", "why", due)
	ctx, cancel := context.WithTimeout(ctx, resendSyncTimeout)
	defer cancel()
	next, sec, err := r.callResend(ctx, rw, want, sec, memo, ready)
	if err != nil {
		return r.resendCallFailed(ctx, rw, want, memo, due, err)
	}
	r.resend.remember(key, next)
	return r.registered(rw, want, next, sec, r.rotationState(rw, sec), time.Now())
}

// callResend makes the calls a sync needs, with the API key read just now.
func (r *Reconciler) callResend(ctx context.Context, rw *v1alpha1.ResendWebhook, want resendWant, sec signingSecret,
	memo *resendSynced, ready bool) (*resendSynced, signingSecret, error) {
	apiKey, err := r.readAPIKey(ctx, rw, want.apiKey)
	if err != nil {
		return nil, sec, err
	}
	c := r.resend.api.Client(apiKey)
	log := ctrl.LoggerFrom(ctx)
	knownID := ""
	if st := rw.Status.Resend; st != nil {
		knownID = st.WebhookID
	}
	if memo != nil && memo.uid == rw.UID && memo.webhookID != "" {
		knownID = memo.webhookID
	}
	wh, created, err := r.findOrCreateWebhook(ctx, c, rw, want, knownID)
	if err != nil {
		return nil, sec, err
	}
	if !created && (wh.Endpoint != want.endpoint || !sameEvents(wh.Events, want.events)) {
		u := resendapi.Update{}
		if wh.Endpoint != want.endpoint {
			u.Endpoint = new(want.endpoint)
		}
		if !sameEvents(wh.Events, want.events) {
			u.Events = want.events
		}
		if err := c.Update(ctx, wh.ID, u); err != nil {
			return nil, sec, err
		}
		log.Info("updated the webhook at Resend", "webhookID", wh.ID, "endpoint", displayURL(want.endpoint), "events", len(want.events))
	}
	if wh.Status == resendapi.StatusDisabled {
		if memo == nil || memo.state != resendapi.StatusDisabled || memo.webhookID != wh.ID {
			resendDisabledTotal.WithLabelValues(rw.Namespace, rw.Name).Inc()
			r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, v1alpha1.ReasonDisabledByResend, "Sync",
				"Resend disabled webhook %s after repeated failed deliveries; events sent meanwhile were not delivered (replay them in Resend)", wh.ID)
		}
		if want.autoEnable && ready {
			if err := c.Update(ctx, wh.ID, resendapi.Update{Status: new(resendapi.StatusEnabled)}); err != nil {
				return nil, sec, err
			}
			wh.Status = resendapi.StatusEnabled
			log.Info("re-enabled the webhook at Resend", "webhookID", wh.ID)
			r.recorder.Eventf(rw, nil, corev1.EventTypeNormal, "ReEnabled", "Sync", "re-enabled webhook %s at Resend: the receivers are ready", wh.ID)
		}
	}
	if sec, err = r.storeSecret(ctx, rw, want, sec, wh.SigningSecret, created); err != nil {
		return nil, sec, err
	}
	if rotation := r.rotationState(rw, sec); rotation.due(time.Now()) {
		if sec, err = r.rotate(ctx, c, rw, want, sec, wh.ID, rotation); err != nil {
			return nil, sec, err
		}
	}
	return &resendSynced{uid: rw.UID, want: want.fingerprint(), webhookID: wh.ID, state: wh.Status, readAt: time.Now()}, sec, nil
}

// findOrCreateWebhook reads the known webhook, or adopts the one registered for our endpoint
// (a lost status write, a restart), or creates it: there is never a second one for the endpoint.
func (r *Reconciler) findOrCreateWebhook(ctx context.Context, c *resendapi.Client, rw *v1alpha1.ResendWebhook, want resendWant, knownID string) (resendapi.Webhook, bool, error) {
	log := ctrl.LoggerFrom(ctx)
	if knownID != "" {
		wh, err := c.Get(ctx, knownID)
		if err == nil {
			return wh, false, nil
		}
		if !resendapi.IsNotFound(err) {
			return wh, false, err
		}
		log.Info("the webhook is gone at Resend; registering the endpoint again", "webhookID", knownID)
	}
	all, err := c.List(ctx)
	if err != nil {
		return resendapi.Webhook{}, false, err
	}
	for _, w := range all {
		if w.Endpoint == want.endpoint {
			wh, err := c.Get(ctx, w.ID) // List has no signing secret
			if err == nil {
				log.Info("adopted the webhook registered at Resend for this endpoint", "webhookID", wh.ID, "endpoint", displayURL(want.endpoint))
				r.recorder.Eventf(rw, nil, corev1.EventTypeNormal, "Adopted", "Register", "adopted webhook %s registered at Resend for %s", wh.ID, displayURL(want.endpoint))
			}
			return wh, false, err
		}
	}
	wh, err := c.Create(ctx, want.endpoint, want.events)
	if err != nil {
		return wh, false, err
	}
	log.Info("registered the endpoint at Resend", "webhookID", wh.ID, "endpoint", displayURL(want.endpoint), "events", len(want.events))
	r.recorder.Eventf(rw, nil, corev1.EventTypeNormal, v1alpha1.ReasonRegistered, "Register", "registered %s at Resend as webhook %s", displayURL(want.endpoint), wh.ID)
	return wh, true, nil
}

func sameEvents(got, want []string) bool {
	got = slices.Sorted(slices.Values(got))
	return slices.Equal(slices.Compact(got), want)
}

// readAPIKey reads the API key from its Secret, uncached, right before the calls that need it.
func (r *Reconciler) readAPIKey(ctx context.Context, rw *v1alpha1.ResendWebhook, ref v1alpha1.APIKeySecretRef) (string, error) {
	var s corev1.Secret
	err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: rw.Namespace, Name: ref.Name}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return "", apiKeyError(fmt.Sprintf("API key Secret %q not found", ref.Name))
	case err != nil:
		return "", apiKeyError(fmt.Sprintf("reading API key Secret %q: %v", ref.Name, err))
	}
	v := strings.TrimSpace(string(s.Data[ref.Key]))
	if v == "" {
		return "", apiKeyError(fmt.Sprintf("API key Secret %q has no key %q", ref.Name, ref.Key))
	}
	return v, nil
}

// apiKeyError: the API key cannot be read (a user must fix the Secret).
type apiKeyError string

func (e apiKeyError) Error() string { return string(e) }

// resendCondition turns a failed sync into the Registered condition and the wait before the
// next try.
func resendCondition(rw *v1alpha1.ResendWebhook, err error, backoff time.Duration) (metav1.Condition, time.Duration) {
	ref := rw.Spec.Resend.APIKeySecretRef
	if e, ok := errors.AsType[apiKeyError](err); ok {
		return *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonAPIKeyUnavailable, string(e)), backoff
	}
	if _, ok := errors.AsType[signingSecretError](err); ok {
		return *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonSigningSecretError, err.Error()), backoff
	}
	if resendapi.IsUnauthorized(err) {
		return *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonUnauthorized, fmt.Sprintf(
			"Resend rejected the API key in Secret %q (HTTP %d): use a key with full access; %v", ref.Name, resendapi.StatusOf(err), err)), backoff
	}
	if wait, ok := resendapi.RetryAfter(err); ok {
		return *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonRateLimited, fmt.Sprintf(
			"waiting %s for the API key's rate limit at Resend", wait.Round(time.Second))), wait
	}
	return *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonResendError, err.Error()), backoff
}

// resendCallFailed reports a failed sync. A failed periodic read keeps what the last sync
// established (the webhook is most likely still registered) unless the key is rejected.
func (r *Reconciler) resendCallFailed(ctx context.Context, rw *v1alpha1.ResendWebhook, want resendWant, memo *resendSynced, due string, err error) *registration {
	key := client.ObjectKeyFromObject(rw)
	if memo == nil || memo.uid != rw.UID || memo.want != want.fingerprint() {
		// Counts failures only: without a webhookID the next sync starts from scratch.
		memo = &resendSynced{uid: rw.UID, want: want.fingerprint()}
	}
	cond, wait := resendCondition(rw, err, min(maxResendBackoff, 2*time.Second<<min(memo.failures, 10)))
	memo.failures++
	memo.retryAt = time.Now().Add(wait)
	r.resend.remember(key, memo)
	if prev := meta.FindStatusCondition(rw.Status.Conditions, v1alpha1.ConditionRegistered); due == dueRead && prev != nil &&
		cond.Reason != v1alpha1.ReasonUnauthorized && cond.Reason != v1alpha1.ReasonAPIKeyUnavailable {
		ctrl.LoggerFrom(ctx).Info("reading the webhook at Resend failed; keeping the last known state", "error", err.Error(), "retryIn", wait.String())
		return r.keepLastOutcome(rw, wait)
	}
	return r.resendFailed(ctx, rw, cond.Reason, cond.Message, wait)
}

// keepLastOutcome repeats what the status says while a retry waits.
func (r *Reconciler) keepLastOutcome(rw *v1alpha1.ResendWebhook, requeue time.Duration) *registration {
	cond := metav1.Condition{Type: v1alpha1.ConditionRegistered, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonResendError, Message: "waiting to retry the sync with Resend"}
	if prev := meta.FindStatusCondition(rw.Status.Conditions, v1alpha1.ConditionRegistered); prev != nil {
		cond = *prev
	}
	return &registration{cond: cond, status: rw.Status.Resend, requeue: requeue}
}

// resendFailed is a Registered=False outcome; a Warning Event marks the transition into it.
func (r *Reconciler) resendFailed(ctx context.Context, rw *v1alpha1.ResendWebhook, reason, msg string, requeue time.Duration) *registration {
	cond := falseCond(v1alpha1.ConditionRegistered, reason, msg)
	ctrl.LoggerFrom(ctx).Info("Resend registration not done", "reason", reason, "message", msg)
	r.warnOnTransition(rw, *cond)
	return &registration{cond: *cond, status: rw.Status.Resend, requeue: requeue}
}

// warnOnTransition emits one Warning Event when Registered turns False or fails for a new
// reason (rate limiting is routine and only shows in the condition).
func (r *Reconciler) warnOnTransition(rw *v1alpha1.ResendWebhook, cond metav1.Condition) {
	if cond.Reason == v1alpha1.ReasonRateLimited || cond.Reason == v1alpha1.ReasonEndpointUnknown {
		return
	}
	prev := meta.FindStatusCondition(rw.Status.Conditions, v1alpha1.ConditionRegistered)
	if prev != nil && prev.Status == metav1.ConditionFalse && prev.Reason == cond.Reason {
		return
	}
	r.recorder.Eventf(rw, nil, corev1.EventTypeWarning, cond.Reason, "Register", "%s", cond.Message)
}

// registered is the outcome when the webhook is registered as the memo says.
func (r *Reconciler) registered(rw *v1alpha1.ResendWebhook, want resendWant, m *resendSynced, sec signingSecret, rotation rotationState, now time.Time) *registration {
	st := &v1alpha1.ResendStatus{
		WebhookID: m.webhookID, State: m.state, Endpoint: displayURL(want.endpoint), Events: want.events,
		LastRotationRequest: sec.annotation(AnnRotatedFor),
		LastRotationTime:    inSeconds(sec.timeAnnotation(AnnRotatedAt)),
		// PreviousSecretExpiresAt stays after the drop: it says when the old secret stopped counting.
		PreviousSecretExpiresAt: inSeconds(sec.timeAnnotation(AnnPreviousExpiresAt)),
	}
	enabled := 1.0
	reg := &registration{status: st, requeue: m.readAt.Add(r.resend.opts.SyncInterval).Sub(now)}
	if m.state == resendapi.StatusDisabled {
		enabled = 0
		msg := fmt.Sprintf("Resend disabled webhook %s after repeated failed deliveries; ", m.webhookID)
		if want.autoEnable {
			msg += "it is re-enabled once the receivers are ready"
		} else {
			msg += "autoEnable is off: enable it in Resend (or set spec.resend.autoEnable)"
		}
		reg.cond = *falseCond(v1alpha1.ConditionRegistered, v1alpha1.ReasonDisabledByResend, msg)
	} else {
		msg := fmt.Sprintf("webhook %s enabled at Resend for %s (%d event types)", m.webhookID, displayURL(want.endpoint), len(want.events))
		if rotation.pending() && !rotation.due(now) {
			msg += fmt.Sprintf("; the requested rotation waits until %s (one rotation per %s)", rotation.allowedAt.UTC().Format(time.RFC3339), r.resend.opts.MinRotationInterval)
		}
		reg.cond = metav1.Condition{Type: v1alpha1.ConditionRegistered, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRegistered, Message: msg}
	}
	resendEnabledGauge.WithLabelValues(rw.Namespace, rw.Name).Set(enabled)
	// The counter's series exists from 0 on, so increase() sees the first detection.
	resendDisabledTotal.WithLabelValues(rw.Namespace, rw.Name)
	wakeups := []time.Time{sec.previousExpiry()}
	if rotation.pending() {
		wakeups = append(wakeups, rotation.allowedAt)
	}
	for _, t := range wakeups {
		if d := t.Sub(now); d > 0 && (reg.requeue <= 0 || d < reg.requeue) {
			reg.requeue = d
		}
	}
	if reg.requeue <= 0 {
		reg.requeue = time.Second
	}
	return reg
}

// inSeconds is t as the status stores it (whole seconds), so an unchanged status compares equal
// and is not written again.
func inSeconds(t *metav1.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	return new(t.Rfc3339Copy())
}

// detachResend: spec.resend was removed. The webhook at Resend and the signing Secret stay as
// they are (the user takes over); the operator only lets go.
func (r *Reconciler) detachResend(ctx context.Context, rw *v1alpha1.ResendWebhook) {
	r.resend.forget(client.ObjectKeyFromObject(rw))
	if err := r.setResendFinalizer(ctx, rw, false); err != nil {
		ctrl.LoggerFrom(ctx).Info("removing the Resend finalizer failed; retrying", "error", err.Error())
	}
}

// setResendFinalizer adds or removes the finalizer with an optimistic-lock merge patch (other
// controllers' finalizers are never clobbered).
func (r *Reconciler) setResendFinalizer(ctx context.Context, rw *v1alpha1.ResendWebhook, present bool) error {
	if controllerutil.ContainsFinalizer(rw, ResendFinalizer) == present {
		return nil
	}
	orig := rw.DeepCopy()
	if present {
		controllerutil.AddFinalizer(rw, ResendFinalizer)
	} else {
		controllerutil.RemoveFinalizer(rw, ResendFinalizer)
	}
	return r.client.Patch(ctx, rw, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// displayURL is an endpoint fit for status, events and logs: scheme, host and path (a query
// could carry a token; user info is a credential).
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return bounded.Text(u.Scheme+"://"+u.Host+u.EscapedPath(), 300)
}
