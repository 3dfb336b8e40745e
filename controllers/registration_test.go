package controllers_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendsim"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/sender"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/receiver"
)

// One simulated Resend for the package; each test's API key is its own team (account).
// Time scale 1e-4: an endpoint failing for 5 h (1.8 s) is disabled, the 8 h dual-signing window
// lasts 2.9 s, which the operator's window (3 s) covers.
var (
	resendSim    *resendsim.Sim
	resendSimURL string
)

const resendSyncInterval = 3 * time.Second

func startResendSimulator() (stop func()) {
	resendSim = resendsim.New(resendsim.Options{TimeScale: 1e-4, DisableAfter: 5 * time.Hour, DualSigningWindow: 8 * time.Hour})
	srv := httptest.NewServer(resendSim)
	resendSimURL = srv.URL
	return func() { srv.Close(); resendSim.Close() }
}

func resendTestOptions() controllers.ResendOptions {
	return controllers.ResendOptions{APIURL: resendSimURL, SyncInterval: resendSyncInterval, DualSigningWindow: 3 * time.Second, MinRotationInterval: time.Millisecond}
}

const apiKeySecret = "resend-api"

// resendFixture is a namespace with its own API key (and so its own simulated Resend account).
type resendFixture struct {
	t   *testing.T
	ns  string
	key string
}

func newResendFixture(t *testing.T) *resendFixture {
	t.Helper()
	useSharedManager(t)
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	f := &resendFixture{t: t, ns: namespace(t), key: "re_" + hex.EncodeToString(b)}
	resendSim.AddKey(f.key, f.ns)
	secretsInLogs.watch(f.key, f.ns)
	t.Cleanup(f.assertKeyNeverShown)
	return f
}

func (f *resendFixture) createKeySecret() {
	mustCreate(f.t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: apiKeySecret}, StringData: map[string]string{"api-key": f.key + "\n"}})
}

func (f *resendFixture) webhook(name, endpoint string, events ...v1alpha1.EventType) *v1alpha1.ResendWebhook {
	rw := webhook(f.ns, name, sharedRed.URL())
	rw.Spec.Events = events
	rw.Spec.Resend = &v1alpha1.ResendSpec{APIKeySecretRef: v1alpha1.APIKeySecretRef{Name: apiKeySecret}, Endpoint: endpoint}
	return rw
}

func (f *resendFixture) atResend() []resendsim.Webhook { return resendSim.Webhooks(f.ns) }

func (f *resendFixture) calls() map[string]int {
	return maps.Clone(resendSim.Stats().Key(f.key).Calls)
}

// onlyWebhook waits until the account holds exactly one webhook matching check.
func (f *resendFixture) onlyWebhook(check func(resendsim.Webhook) error) resendsim.Webhook {
	f.t.Helper()
	var got resendsim.Webhook
	testutil.Eventually(f.t, wait, "one webhook at Resend", func() error {
		all := f.atResend()
		if len(all) != 1 {
			return fmt.Errorf("%d webhooks at Resend, want 1", len(all))
		}
		got = all[0]
		return check(got)
	})
	return got
}

// assertKeyNeverShown: the API key is in no log line, Event, status or other Secret.
func (f *resendFixture) assertKeyNeverShown() {
	t := f.t
	if strings.Contains(managerLogs.String(), f.key) {
		t.Errorf("the API key appears in the manager's logs")
	}
	switch leaked, lines := secretsInLogs.seen(f.key); {
	case leaked:
		t.Errorf("the API key appears in the manager's logs (a debug line, or above)")
	case lines == 0:
		t.Errorf("the log scanner saw no line naming namespace %s: the check above saw nothing of this test", f.ns)
	}
	ctx := context.Background()
	var events eventsv1.EventList
	var rws v1alpha1.ResendWebhookList
	var secrets corev1.SecretList
	for _, l := range []client.ObjectList{&events, &rws, &secrets} {
		if err := k8s.List(ctx, l, client.InNamespace(f.ns)); err != nil {
			t.Error(err)
		}
	}
	for _, s := range secrets.Items {
		if s.Name == apiKeySecret {
			continue
		}
		b, _ := json.Marshal(s)
		if strings.Contains(string(b), f.key) {
			t.Errorf("the API key appears in Secret %s", s.Name)
		}
	}
	for _, obj := range []any{events.Items, rws.Items} {
		b, _ := json.Marshal(obj)
		if strings.Contains(string(b), f.key) {
			t.Errorf("the API key appears in %T", obj)
		}
	}
	if len(events.Items) == 0 {
		t.Errorf("no events recorded in %s: the check above proves nothing", f.ns)
	}
}

func signingSecretOf(t *testing.T, rw *v1alpha1.ResendWebhook) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := get(rw.Namespace, rw.Spec.SigningSecret.Name, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func currentWebhook(t *testing.T, rw *v1alpha1.ResendWebhook) *v1alpha1.ResendWebhook {
	t.Helper()
	var cur v1alpha1.ResendWebhook
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rw), &cur); err != nil {
		t.Fatal(err)
	}
	return &cur
}

func TestResendRegistersOwnsTheSecretUpdatesAndAdopts(t *testing.T) {
	f := newResendFixture(t)
	endpoint := "https://hooks." + f.ns + ".example/resend?token=not-for-status"
	rw := f.webhook("hooks", endpoint, "email.delivered", "email.bounced")
	mustCreate(t, rw)

	// No API key yet: a clear condition, no call.
	waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionFalse, v1alpha1.ReasonAPIKeyUnavailable)
	testutil.Eventually(t, wait, "APIKeyUnavailable event", func() error { return warningEvent(f.ns, "hooks", v1alpha1.ReasonAPIKeyUnavailable) })
	if n := resendSim.Stats().Key(f.key).Requests; n != 0 {
		t.Fatalf("%d requests without an API key", n)
	}
	f.createKeySecret()

	c := waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	st := currentStatus(t, rw).Resend
	at := f.onlyWebhook(func(w resendsim.Webhook) error { return nil })
	if st == nil || st.WebhookID != at.ID || st.State != "enabled" || !slices.Equal(st.Events, []string{"email.bounced", "email.delivered"}) ||
		st.Endpoint != "https://hooks."+f.ns+".example/resend" || strings.Contains(c.Message, "token") {
		t.Fatalf("status.resend %+v (condition %q); at Resend %+v", st, c.Message, at)
	}
	if at.Endpoint != endpoint || !slices.Equal(slices.Sorted(slices.Values(at.Events)), []string{"email.bounced", "email.delivered"}) {
		t.Errorf("at Resend: %+v", at)
	}
	sec := signingSecretOf(t, rw)
	cur := currentWebhook(t, rw)
	if string(sec.Data["signing-secret"]) != at.SigningSecret || !metav1.IsControlledBy(sec, cur) || sec.Labels[render.LabelManagedBy] != render.ManagerName {
		t.Errorf("signing Secret: data matches Resend's secret: %v, owners %+v, labels %v", string(sec.Data["signing-secret"]) == at.SigningSecret, sec.OwnerReferences, sec.Labels)
	}
	if !controllerutil.ContainsFinalizer(cur, controllers.ResendFinalizer) {
		t.Errorf("finalizers %v", cur.Finalizers)
	}
	waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionTrue, v1alpha1.ReasonSecretsResolved)
	var d appsv1.Deployment
	waitFor(t, f.ns, "hooks-receiver", &d)
	if !projects(d, "signing-secret.previous") {
		t.Errorf("the receivers' signing volume does not project the previous key: %+v", d.Spec.Template.Spec.Volumes)
	}

	// Resyncs that change nothing (the 1 s status refresh, a change of a watched Secret) call
	// nobody but the periodic read: one GET per sync interval.
	before, began := f.calls(), time.Now()
	for i := range 5 {
		testutil.Eventually(t, wait, "touch the API key Secret", func() error {
			var s corev1.Secret
			if err := get(f.ns, apiKeySecret, &s); err != nil {
				return err
			}
			s.Labels = map[string]string{"touched": fmt.Sprint(i)}
			return k8s.Update(context.Background(), &s)
		})
	}
	testutil.Eventually(t, 3*resendSyncInterval, "two periodic reads", func() error {
		if n := f.calls()["GET /webhooks/{id}"] - before["GET /webhooks/{id}"]; n < 2 {
			return fmt.Errorf("%d periodic reads so far", n)
		}
		return nil
	})
	after := f.calls()
	reads := after["GET /webhooks/{id}"] - before["GET /webhooks/{id}"]
	if limit := int(time.Since(began)/resendSyncInterval) + 1; reads > limit {
		t.Errorf("%d reads in %s, want at most %d (one per %s)", reads, time.Since(began), limit, resendSyncInterval)
	}
	delete(after, "GET /webhooks/{id}")
	delete(before, "GET /webhooks/{id}")
	if !maps.Equal(after, before) {
		t.Errorf("calls other than the periodic read: before %v, after %v", before, after)
	}

	// An events change reaches Resend.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Events = []v1alpha1.EventType{"email.complained"} })
	f.onlyWebhook(func(w resendsim.Webhook) error {
		if !slices.Equal(w.Events, []string{"email.complained"}) {
			return fmt.Errorf("events at Resend %v", w.Events)
		}
		return nil
	})
	testutil.Eventually(t, wait, "status events", func() error {
		if got := currentStatus(t, rw).Resend.Events; !slices.Equal(got, []string{"email.complained"}) {
			return fmt.Errorf("status.resend.events %v", got)
		}
		return nil
	})

	// An endpoint change updates the same webhook at Resend: no second one, the same secret.
	moved := "https://moved." + f.ns + ".example/resend"
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Resend.Endpoint = moved })
	f.onlyWebhook(func(w resendsim.Webhook) error {
		if w.Endpoint != moved || w.ID != at.ID || w.SigningSecret != at.SigningSecret {
			return fmt.Errorf("at Resend %+v, want webhook %s at %s", w, at.ID, moved)
		}
		return nil
	})
	testutil.Eventually(t, wait, "status endpoint", func() error {
		if got := currentStatus(t, rw).Resend.Endpoint; got != moved {
			return fmt.Errorf("status.resend.endpoint %q", got)
		}
		return nil
	})

	// A lost status write and a restart: the webhook is adopted, not registered twice.
	testutil.Eventually(t, wait, "wipe status.resend", func() error {
		cur := currentWebhook(t, rw)
		cur.Status.Resend = nil
		cur.Status.Conditions = slices.DeleteFunc(cur.Status.Conditions, func(c metav1.Condition) bool { return c.Type == v1alpha1.ConditionRegistered })
		return k8s.Status().Update(context.Background(), cur)
	})
	restartSharedManager(t)
	waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	if got := currentStatus(t, rw).Resend.WebhookID; got != at.ID {
		t.Errorf("after the lost status write the webhook is %s, want the adopted %s", got, at.ID)
	}
	f.onlyWebhook(func(w resendsim.Webhook) error { return nil })
	if n := f.calls()["POST /webhooks"]; n != 1 {
		t.Errorf("%d creates at Resend, want 1", n)
	}
	testutil.Eventually(t, wait, "Adopted event", func() error { return event(f.ns, "hooks", corev1.EventTypeNormal, "Adopted") })
}

// projects reports whether the Deployment's signing volume projects key.
func projects(d appsv1.Deployment, key string) bool {
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret != nil && slices.ContainsFunc(src.Secret.Items, func(i corev1.KeyToPath) bool { return i.Key == key }) {
				return true
			}
		}
	}
	return false
}

// event finds an event of type typ with reason about the webhook.
func event(ns, name, typ, reason string) error {
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "ResendWebhook" && e.Regarding.Name == name && e.Type == typ && e.Reason == reason {
			return nil
		}
	}
	return fmt.Errorf("no %s event %s for %s among %d events", typ, reason, name, len(list.Items))
}

// receiverPod runs the real receiver handler the way a receiver pod does: its secrets
// directory follows the signing Secret's keys that the operator's rendered Deployment projects,
// refreshed like the kubelet refreshes a Secret volume (every 100 ms here, about a minute for
// a real kubelet), and it rescans that directory.
type receiverPod struct {
	URL     string
	secrets *receiver.SecretsDir
}

func startReceiverPod(t *testing.T, ns, rwName string) *receiverPod {
	t.Helper()
	dir := t.TempDir()
	secrets, err := receiver.NewSecretsDir(dir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: sharedRed.Addr()})
	h, err := receiver.NewHandler(receiver.Options{Redis: rdb, Secrets: secrets, Queue: ns + "." + rwName, Webhook: ns + "/" + rwName})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { secrets.Run(ctx, 20*time.Millisecond) })
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			projectSigningVolume(ctx, ns, rwName+"-receiver", dir)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
		_ = rdb.Close()
	})
	return &receiverPod{URL: srv.URL, secrets: secrets}
}

// projectSigningVolume writes the keys the Deployment's signing volume projects into dir and
// removes the files of keys that are gone; errors wait for the next round, as the kubelet's do.
func projectSigningVolume(ctx context.Context, ns, deployment, dir string) {
	var d appsv1.Deployment
	if k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: deployment}, &d) != nil {
		return
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != "signing-secrets" || v.Projected == nil || len(v.Projected.Sources) == 0 || v.Projected.Sources[0].Secret == nil {
			continue
		}
		src := v.Projected.Sources[0].Secret
		var s corev1.Secret
		if k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: src.Name}, &s) != nil {
			return
		}
		for _, item := range src.Items {
			path := filepath.Join(dir, item.Path)
			val, ok := s.Data[item.Key]
			if !ok {
				_ = os.Remove(path)
				continue
			}
			if cur, err := os.ReadFile(path); err == nil && string(cur) == string(val) {
				continue
			}
			tmp := filepath.Join(dir, "."+item.Path+".tmp")
			if os.WriteFile(tmp, val, 0o600) == nil {
				_ = os.Rename(tmp, path)
			}
		}
	}
}

// postSigned posts one event signed with secret only, as a forger or a stale sender would.
func postSigned(t *testing.T, url, secret string) int {
	t.Helper()
	code, err := sender.Post(context.Background(), http.DefaultClient, url, "", secret, signing.NewMessageID(), sender.SampleEvent("email.sent", 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestResendRotationUnderTrafficGetsNo401(t *testing.T) {
	f := newResendFixture(t)
	f.createKeySecret()
	pod := startReceiverPod(t, f.ns, "hooks")
	rw := f.webhook("hooks", pod.URL+"/", "email.sent")
	mustCreate(t, rw)
	waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	testutil.Eventually(t, wait, "the receiver loads the secret", func() error {
		if pod.secrets.Valid() != 1 {
			return fmt.Errorf("%d secrets loaded", pod.secrets.Valid())
		}
		return nil
	})
	old := f.onlyWebhook(func(resendsim.Webhook) error { return nil }).SigningSecret
	rotateCalls := func() int { return f.calls()["POST /webhooks/{id}/signing-secret/rotate"] }
	base := resendSim.Stats()

	traffic := resendSim.Stream(f.ns, "email.sent", 20*time.Millisecond) // for the whole rotation
	defer traffic.Stop()

	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Annotations = map[string]string{v1alpha1.AnnotationRotateSigningSecret: "2026-01-01"}
	})
	testutil.Eventually(t, wait, "rotation recorded", func() error {
		if got := currentStatus(t, rw).Resend; got == nil || got.LastRotationRequest != "2026-01-01" || got.LastRotationTime == nil || got.PreviousSecretExpiresAt == nil {
			return fmt.Errorf("status.resend %+v", got)
		}
		return nil
	})
	rotated := f.onlyWebhook(func(w resendsim.Webhook) error { return nil })
	sec := signingSecretOf(t, rw)
	if rotated.SigningSecret == old || string(sec.Data["signing-secret"]) != rotated.SigningSecret || string(sec.Data["signing-secret.previous"]) != old {
		t.Fatalf("after the rotation the Secret holds the new secret: %v, the old one as previous: %v",
			string(sec.Data["signing-secret"]) == rotated.SigningSecret, string(sec.Data["signing-secret.previous"]) == old)
	}
	// Within the window the receivers accept a delivery signed with the old secret alone.
	testutil.Eventually(t, wait, "receiver holds both secrets", func() error {
		if pod.secrets.Valid() != 2 {
			return fmt.Errorf("%d secrets loaded", pod.secrets.Valid())
		}
		return nil
	})
	if code := postSigned(t, pod.URL, old); code != http.StatusOK {
		t.Errorf("old secret within the window: %d", code)
	}
	// After the window the operator drops the old secret; the new one keeps working.
	testutil.Eventually(t, 3*wait, "previous secret dropped", func() error {
		if _, ok := signingSecretOf(t, rw).Data["signing-secret.previous"]; ok {
			return errors.New("the previous key is still in the Secret")
		}
		return nil
	})
	testutil.Eventually(t, wait, "receiver drops the old secret", func() error {
		if code := postSigned(t, pod.URL, old); code != http.StatusUnauthorized {
			return fmt.Errorf("old secret after the window: %d, want 401", code)
		}
		return nil
	})
	sent := traffic.Stop()
	testutil.Eventually(t, wait, "every event delivered", func() error {
		st := resendSim.Stats()
		if got := int64(st.Delivered - base.Delivered); got != sent {
			return fmt.Errorf("delivered %d of %d", got, sent)
		}
		return nil
	})
	st := resendSim.Stats()
	if n := st.EndpointStatus[401] - base.EndpointStatus[401]; n != 0 {
		t.Errorf("%d deliveries got 401 during the rotation", n)
	}
	if attempts := st.Attempts - base.Attempts; int64(attempts) != sent || st.Signatures[2] == base.Signatures[2] || sent < 50 {
		t.Errorf("%d attempts for %d events (want one each), %d dual-signed", attempts, sent, st.Signatures[2]-base.Signatures[2])
	}
	if n := rotateCalls(); n != 1 {
		t.Errorf("%d rotate calls, want 1", n)
	}
	testutil.Eventually(t, wait, "rotation event", func() error { return event(f.ns, "hooks", corev1.EventTypeNormal, "SigningSecretRotated") })

	// A new annotation value rotates once more; a resync does not.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Annotations[v1alpha1.AnnotationRotateSigningSecret] = "again" })
	testutil.Eventually(t, wait, "second rotation", func() error {
		if got := currentStatus(t, rw).Resend.LastRotationRequest; got != "again" {
			return fmt.Errorf("lastRotationRequest %q", got)
		}
		return nil
	})
	if n := rotateCalls(); n != 2 {
		t.Errorf("%d rotate calls, want 2", n)
	}

	// Once settled, reconciles (every second) and the periodic read write nothing.
	testutil.Eventually(t, 3*wait, "previous secret dropped again", func() error {
		if _, ok := signingSecretOf(t, rw).Data["signing-secret.previous"]; ok {
			return errors.New("the previous key is still in the Secret")
		}
		return nil
	})
	rv, reads := currentWebhook(t, rw).ResourceVersion, f.calls()["GET /webhooks/{id}"]
	testutil.Eventually(t, 2*resendSyncInterval, "a periodic read", func() error {
		if f.calls()["GET /webhooks/{id}"] == reads {
			return errors.New("no read yet")
		}
		return nil
	})
	if cur := currentWebhook(t, rw); cur.ResourceVersion != rv {
		t.Errorf("the settled webhook was written again: status %+v", cur.Status.Resend)
	}
}

func TestResendDisabledEndpointIsReportedAndReEnabled(t *testing.T) {
	f := newResendFixture(t)
	f.createKeySecret()
	var failing atomic.Bool
	failing.Store(true)
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer endpoint.Close()
	rw := f.webhook("hooks", endpoint.URL, "email.sent")
	mustCreate(t, rw)
	waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	if v := enabledMetric(t, f.ns, "hooks"); v != 1 {
		t.Errorf("rwh_resend_webhook_enabled = %v, want 1", v)
	}

	// The receivers fail (no Deployment is available in envtest): Resend retries, then disables.
	if _, _, err := resendSim.Send(f.ns, sender.SampleEvent("email.sent", 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionFalse, v1alpha1.ReasonDisabledByResend)
	if !strings.Contains(c.Message, "re-enabled once the receivers are ready") {
		t.Errorf("message %q", c.Message)
	}
	if r := waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady); !strings.Contains(r.Message, "Registered: Resend disabled") {
		t.Errorf("Ready does not fold Registered in: %q", r.Message)
	}
	testutil.Eventually(t, wait, "DisabledByResend event", func() error { return warningEvent(f.ns, "hooks", v1alpha1.ReasonDisabledByResend) })
	if v := enabledMetric(t, f.ns, "hooks"); v != 0 {
		t.Errorf("rwh_resend_webhook_enabled = %v, want 0", v)
	}
	if v := metricValue(t, "rwh_resend_webhook_disabled_total", f.ns, "hooks"); v != 1 {
		t.Errorf("rwh_resend_webhook_disabled_total = %v, want 1", v)
	}

	// The receivers are ready again: the operator enables the endpoint.
	failing.Store(false)
	setAvailable(t, f.ns, "hooks-receiver", 2)
	waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	f.onlyWebhook(func(w resendsim.Webhook) error {
		if w.Status != "enabled" {
			return fmt.Errorf("status at Resend %s", w.Status)
		}
		return nil
	})
	testutil.Eventually(t, wait, "ReEnabled event", func() error { return event(f.ns, "hooks", corev1.EventTypeNormal, "ReEnabled") })
	if v := enabledMetric(t, f.ns, "hooks"); v != 1 {
		t.Errorf("rwh_resend_webhook_enabled = %v after re-enabling, want 1", v)
	}
	before := resendSim.Stats().Delivered
	if _, n, err := resendSim.Send(f.ns, sender.SampleEvent("email.sent", 2, time.Now())); err != nil || n != 1 {
		t.Fatalf("send after re-enabling: %v, %d webhooks", err, n)
	}
	testutil.Eventually(t, wait, "delivered", func() error {
		if resendSim.Stats().Delivered == before {
			return errors.New("not yet")
		}
		return nil
	})
}

func enabledMetric(t *testing.T, ns, name string) float64 {
	return metricValue(t, "rwh_resend_webhook_enabled", ns, name)
}

// metricValue reads a gauge or counter of the manager's registry (-1: no series).
func metricValue(t *testing.T, family, ns, name string) float64 {
	t.Helper()
	families, err := crmetricsGather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelIs(m, "namespace", ns) && labelIs(m, "name", name) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func TestResendRateLimitIsSharedAndRetryAfterRespected(t *testing.T) {
	f := newResendFixture(t)
	f.createKeySecret()
	var rws []*v1alpha1.ResendWebhook
	for i := range 5 {
		rw := f.webhook(fmt.Sprintf("hooks-%d", i), fmt.Sprintf("https://hooks-%d.%s.example/", i, f.ns), "email.sent")
		mustCreate(t, rw)
		rws = append(rws, rw)
	}
	for _, rw := range rws {
		waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	}
	st := resendSim.Stats().Key(f.key)
	if st.MaxPerSecond > 2 || st.RateLimited != 0 || st.Calls["POST /webhooks"] != 5 {
		t.Errorf("five webhooks, one key: %+v; want at most 2 requests in any second, no 429, 5 creates", st)
	}

	// Resend answers 429 with retry-after 3 s while all five change: the first call's 429 holds
	// off every webhook of the key, and the changes go through after the retry-after.
	resendSim.Throttle(f.key, 3*time.Second)
	for _, rw := range rws {
		update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Events = []v1alpha1.EventType{"email.opened"} })
	}
	testutil.Eventually(t, 2*wait, "updates after the retry-after", func() error {
		for _, w := range f.atResend() {
			if !slices.Equal(w.Events, []string{"email.opened"}) {
				return fmt.Errorf("%s still has events %v", w.Endpoint, w.Events)
			}
		}
		return nil
	})
	st = resendSim.Stats().Key(f.key)
	if st.RateLimited < 1 || st.RateLimited > 2 || st.MaxPerSecond > 2 {
		t.Errorf("after a 429: %+v; want one (at most two in flight) 429s, then silence until retry-after", st)
	}
}

// Resend cannot be reached while a webhook is deleted: the deletion waits with a clear
// condition and Event, and finishes by itself, removing the webhook at Resend, once Resend
// answers again.
func TestResendDeletionWaitsForAnUnreachableResend(t *testing.T) {
	f := newResendFixture(t)
	f.createKeySecret()
	rw := f.webhook("unreachable", "https://unreachable."+f.ns+".example/", "email.sent")
	mustCreate(t, rw)
	waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	f.onlyWebhook(func(resendsim.Webhook) error { return nil })

	resendSim.Unreachable(f.key, true)
	t.Cleanup(func() { resendSim.Unreachable(f.key, false) })
	if err := k8s.Delete(context.Background(), rw); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "DeletionFailed", func() error {
		var cur v1alpha1.ResendWebhook
		if err := get(f.ns, rw.Name, &cur); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRegistered)
		if c == nil || c.Reason != v1alpha1.ReasonDeletionFailed || !strings.Contains(c.Message, "deletionPolicy to Retain") {
			return fmt.Errorf("Registered %+v", c)
		}
		return nil
	})
	testutil.Eventually(t, wait, "DeletionFailed event", func() error { return warningEvent(f.ns, rw.Name, v1alpha1.ReasonDeletionFailed) })
	if n := len(f.atResend()); n != 1 {
		t.Fatalf("%d webhooks at Resend during the outage, want 1", n)
	}

	resendSim.Unreachable(f.key, false)
	testutil.Eventually(t, wait, "deleted once Resend answers", func() error { return absent(f.ns, rw.Name, &v1alpha1.ResendWebhook{}) })
	if n := len(f.atResend()); n != 0 {
		t.Errorf("%d webhooks at Resend after the deletion, want 0", n)
	}
}

func TestResendDeletionPolicies(t *testing.T) {
	f := newResendFixture(t)
	f.createKeySecret()
	ctx := context.Background()
	del := f.webhook("delete-me", "https://delete."+f.ns+".example/", "email.sent")
	keep := f.webhook("keep-me", "https://keep."+f.ns+".example/", "email.sent")
	keep.Spec.Resend.DeletionPolicy = v1alpha1.DeletionPolicyRetain
	stuck := f.webhook("stuck", "https://stuck."+f.ns+".example/", "email.sent")
	for _, rw := range []*v1alpha1.ResendWebhook{del, keep, stuck} {
		mustCreate(t, rw)
	}
	for _, rw := range []*v1alpha1.ResendWebhook{del, keep, stuck} {
		waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionTrue, v1alpha1.ReasonRegistered)
	}
	endpoints := func() []string {
		var out []string
		for _, w := range f.atResend() {
			out = append(out, w.Endpoint)
		}
		slices.Sort(out)
		return out
	}

	// Delete removes the webhook at Resend; Retain keeps it and its signing Secret.
	for _, rw := range []*v1alpha1.ResendWebhook{del, keep} {
		if err := k8s.Delete(ctx, rw); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, wait, rw.Name+" gone", func() error { return absent(f.ns, rw.Name, &v1alpha1.ResendWebhook{}) })
	}
	if got := endpoints(); !slices.Equal(got, []string{keep.Spec.Resend.Endpoint, stuck.Spec.Resend.Endpoint}) {
		t.Errorf("endpoints at Resend %v", got)
	}
	if s := signingSecretOf(t, keep); len(s.OwnerReferences) != 0 || len(s.Data["signing-secret"]) == 0 {
		t.Errorf("retained Secret owners %+v", s.OwnerReferences)
	}

	// The key is revoked: deletion waits with a clear condition and event; Retain lets it go.
	resendSim.RevokeKey(f.key)
	if err := k8s.Delete(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "DeletionFailed", func() error {
		var cur v1alpha1.ResendWebhook
		if err := get(f.ns, stuck.Name, &cur); err != nil {
			return err
		}
		for _, c := range cur.Status.Conditions {
			if c.Type == v1alpha1.ConditionRegistered && c.Reason == v1alpha1.ReasonDeletionFailed {
				if !strings.Contains(c.Message, "deletionPolicy to Retain") || !strings.Contains(c.Message, "HTTP 403") {
					return fmt.Errorf("message %q", c.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", cur.Status.Conditions)
	})
	testutil.Eventually(t, wait, "DeletionFailed event", func() error { return warningEvent(f.ns, stuck.Name, v1alpha1.ReasonDeletionFailed) })
	update(t, stuck, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Resend.DeletionPolicy = v1alpha1.DeletionPolicyRetain })
	testutil.Eventually(t, wait, "stuck gone after Retain", func() error { return absent(f.ns, stuck.Name, &v1alpha1.ResendWebhook{}) })
	if got := endpoints(); len(got) != 2 {
		t.Errorf("endpoints at Resend %v, want the retained two", got)
	}
}

func TestResendLeavesAForeignSecretAloneAndReportsARejectedKey(t *testing.T) {
	f := newResendFixture(t)
	f.createKeySecret()
	foreign := signingSecret(f.ns, "taken-signing", map[string]string{"signing-secret": validSecret})
	mustCreate(t, foreign)
	rv := foreign.ResourceVersion
	rw := f.webhook("taken", "https://taken."+f.ns+".example/", "email.sent")
	mustCreate(t, rw)
	c := waitCondition(t, rw, v1alpha1.ConditionRegistered, metav1.ConditionFalse, v1alpha1.ReasonNameConflict)
	if !strings.Contains(c.Message, `"taken-signing"`) {
		t.Errorf("message %q", c.Message)
	}
	testutil.Eventually(t, wait, "NameConflict event", func() error { return warningEvent(f.ns, "taken", v1alpha1.ReasonNameConflict) })
	var s corev1.Secret
	if err := get(f.ns, "taken-signing", &s); err != nil || s.ResourceVersion != rv || len(s.OwnerReferences) != 0 {
		t.Errorf("the foreign Secret was touched: %v rv %s→%s owners %+v", err, rv, s.ResourceVersion, s.OwnerReferences)
	}
	if n := resendSim.Stats().Key(f.key).Requests; n != 0 {
		t.Errorf("%d calls to Resend for a webhook whose secret cannot be stored", n)
	}
	if err := k8s.Delete(context.Background(), rw); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "deleted", func() error { return absent(f.ns, "taken", &v1alpha1.ResendWebhook{}) })
	if err := get(f.ns, "taken-signing", &s); err != nil || s.ResourceVersion != rv {
		t.Errorf("the foreign Secret did not survive untouched: %v", err)
	}

	// A key Resend rejects.
	bad := f.webhook("badkey", "https://badkey."+f.ns+".example/", "email.sent")
	bad.Spec.Resend.APIKeySecretRef = v1alpha1.APIKeySecretRef{Name: "wrong-key"}
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "wrong-key"}, StringData: map[string]string{"api-key": "re_not_a_key"}})
	mustCreate(t, bad)
	c = waitCondition(t, bad, v1alpha1.ConditionRegistered, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized)
	if !strings.Contains(c.Message, `"wrong-key"`) || strings.Contains(c.Message, "re_not_a_key") {
		t.Errorf("message %q", c.Message)
	}
	testutil.Eventually(t, wait, "Unauthorized event", func() error { return warningEvent(f.ns, "badkey", v1alpha1.ReasonUnauthorized) })
	if err := k8s.Delete(context.Background(), bad); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	// Nothing was ever registered for it, so deletion does not wait for the rejected key.
	testutil.Eventually(t, wait, "deleted", func() error { return absent(f.ns, "badkey", &v1alpha1.ResendWebhook{}) })
}
