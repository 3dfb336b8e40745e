package controllers

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func resendWebhook() *v1alpha1.ResendWebhook {
	return &v1alpha1.ResendWebhook{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hooks", UID: "uid-1", Generation: 3},
		Spec: v1alpha1.ResendWebhookSpec{
			SigningSecret: v1alpha1.SigningSecretRef{Name: "hooks-signing"},
			Resend:        &v1alpha1.ResendSpec{APIKeySecretRef: v1alpha1.APIKeySecretRef{Name: "api"}},
		},
	}
}

func TestWantedRegistration(t *testing.T) {
	rw := resendWebhook()
	w := wantedRegistration(rw, "http://lb.example/")
	if w.endpoint != "http://lb.example/" || !slices.Equal(w.events, slices.Sorted(slices.Values(resendapi.EventTypes))) ||
		w.secretKey != "signing-secret" || w.apiKey.Key != "api-key" || !w.autoEnable {
		t.Errorf("defaults: %+v", w)
	}
	rw.Spec.Resend.Endpoint = "https://hooks.example/x"
	rw.Spec.Events = []v1alpha1.EventType{"email.sent", "email.bounced"}
	rw.Spec.SigningSecret.Keys = []string{"current", "next"}
	rw.Spec.Resend.AutoEnable = new(false)
	w2 := wantedRegistration(rw, "http://lb.example/")
	if w2.endpoint != "https://hooks.example/x" || !slices.Equal(w2.events, []string{"email.bounced", "email.sent"}) || w2.secretKey != "current" || w2.autoEnable {
		t.Errorf("explicit: %+v", w2)
	}
	if w.fingerprint() == w2.fingerprint() {
		t.Error("different wants share a fingerprint")
	}
	if rw.Spec.Resend.APIKeySecretRef.Key != "" {
		t.Error("wantedRegistration defaulted its input")
	}
}

func TestSyncDue(t *testing.T) {
	now := time.Now()
	rw := resendWebhook()
	want := wantedRegistration(rw, "http://lb.example/")
	valid := signingSecret{key: "signing-secret", obj: &corev1.Secret{Data: map[string][]byte{"signing-secret": []byte(testSecret)}}}
	fresh := func() *resendSynced {
		return &resendSynced{uid: rw.UID, want: want.fingerprint(), webhookID: "wh", state: "enabled", readAt: now.Add(-time.Minute)}
	}
	interval := 10 * time.Minute
	for _, tc := range []struct {
		name     string
		memo     func(*resendSynced) *resendSynced
		sec      signingSecret
		rotation rotationState
		ready    bool
		want     string
	}{
		{"synced and nothing changed", func(m *resendSynced) *resendSynced { return m }, valid, rotationState{}, true, dueNothing},
		{"never synced", func(*resendSynced) *resendSynced { return nil }, valid, rotationState{}, true, dueFirst},
		{"spec changed", func(m *resendSynced) *resendSynced { m.want = "other"; return m }, valid, rotationState{}, true, dueFirst},
		{"re-created webhook object", func(m *resendSynced) *resendSynced { m.uid = "uid-2"; return m }, valid, rotationState{}, true, dueFirst},
		{"failure-only memo", func(m *resendSynced) *resendSynced { m.webhookID = ""; return m }, valid, rotationState{}, true, dueFirst},
		{"secret deleted", func(m *resendSynced) *resendSynced { return m }, signingSecret{key: "signing-secret"}, rotationState{}, true, dueSecret},
		{"rotation requested", func(m *resendSynced) *resendSynced { return m }, valid, rotationState{request: "b", done: "a"}, true, dueRotation},
		{"rotation too soon after the last", func(m *resendSynced) *resendSynced { return m }, valid, rotationState{request: "b", done: "a", allowedAt: now.Add(time.Minute)}, true, dueNothing},
		{"rotation already done", func(m *resendSynced) *resendSynced { return m }, valid, rotationState{request: "a", done: "a"}, true, dueNothing},
		{"disabled, receivers ready", func(m *resendSynced) *resendSynced { m.state = "disabled"; return m }, valid, rotationState{}, true, dueEnable},
		{"disabled, receivers not ready", func(m *resendSynced) *resendSynced { m.state = "disabled"; return m }, valid, rotationState{}, false, dueNothing},
		{"interval passed", func(m *resendSynced) *resendSynced { m.readAt = now.Add(-interval); return m }, valid, rotationState{}, true, dueRead},
	} {
		if got := syncDue(tc.memo(fresh()), rw.UID, want, tc.sec, tc.rotation, tc.ready, now, interval); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	noAuto := want
	noAuto.autoEnable = false
	disabled := fresh()
	disabled.state = "disabled"
	disabled.want = noAuto.fingerprint()
	if got := syncDue(disabled, rw.UID, noAuto, valid, rotationState{}, true, now, interval); got != dueNothing {
		t.Errorf("autoEnable off: %q", got)
	}
}

func TestSeedMemoTrustsOnlyACurrentStatus(t *testing.T) {
	now := time.Now()
	rw := resendWebhook()
	want := wantedRegistration(rw, "https://hooks.example/r")
	rw.Status.Resend = &v1alpha1.ResendStatus{WebhookID: "wh", State: "enabled", Endpoint: "https://hooks.example/r", Events: want.events}
	rw.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionRegistered, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRegistered, ObservedGeneration: 3}}
	m := seedMemo(rw, want, now)
	if m == nil || m.webhookID != "wh" || m.readAt != now || m.uid != rw.UID {
		t.Fatalf("seed %+v", m)
	}
	stale := rw.DeepCopy()
	stale.Status.Conditions[0].ObservedGeneration = 2
	failed := rw.DeepCopy()
	failed.Status.Conditions[0].Reason = v1alpha1.ReasonResendError
	for name, got := range map[string]*resendSynced{
		"older generation": seedMemo(stale, want, now),
		"other endpoint":   seedMemo(rw, wantedRegistration(rw, "https://elsewhere.example/"), now),
		"failed last time": seedMemo(failed, want, now),
	} {
		if got != nil {
			t.Errorf("%s: seeded %+v", name, got)
		}
	}
}

func TestRotationState(t *testing.T) {
	now := time.Now()
	r := &Reconciler{resend: &resendIntegration{opts: ResendOptions{MinRotationInterval: time.Minute}}}
	rw := resendWebhook()
	sec := signingSecret{key: "k", obj: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		AnnRotatedFor: "one", AnnRotatedAt: now.Add(-30 * time.Second).UTC().Format(time.RFC3339Nano),
	}}}}
	if st := r.rotationState(rw, sec); st.pending() {
		t.Errorf("no annotation: %+v", st)
	}
	rw.Annotations = map[string]string{v1alpha1.AnnotationRotateSigningSecret: "one"}
	if st := r.rotationState(rw, sec); st.pending() {
		t.Errorf("already done: %+v", st)
	}
	rw.Annotations[v1alpha1.AnnotationRotateSigningSecret] = "two"
	st := r.rotationState(rw, sec)
	if !st.pending() || st.due(now) || !st.due(now.Add(31*time.Second)) {
		t.Errorf("one per minute: %+v", st)
	}
}

func TestSigningSecretPreviousExpiry(t *testing.T) {
	exp := time.Date(2026, 3, 4, 5, 6, 7, 800_000_000, time.UTC)
	sec := signingSecret{key: "k", obj: &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnPreviousExpiresAt: exp.Format(time.RFC3339Nano)}},
		Data:       map[string][]byte{"k": []byte(testSecret)},
	}}
	if !sec.previousExpiry().IsZero() {
		t.Error("no previous key: no expiry")
	}
	sec.obj.Data[render.PreviousSigningKey("k")] = []byte(testSecret)
	if got := sec.previousExpiry(); !got.Equal(exp) {
		t.Errorf("expiry %s, want %s (sub-second precision kept)", got, exp)
	}
}

func TestRequeueAfterAndDisplayURL(t *testing.T) {
	if got := requeueAfter(30*time.Second, nil); got != 30*time.Second {
		t.Errorf("without Resend: %s", got)
	}
	if got := requeueAfter(30*time.Second, &registration{requeue: 2 * time.Second}); got != 2*time.Second {
		t.Errorf("earlier Resend turn: %s", got)
	}
	if got := requeueAfter(30*time.Second, &registration{requeue: time.Hour}); got != 30*time.Second {
		t.Errorf("later Resend turn: %s", got)
	}
	if got := displayURL("https://user:pw@hooks.example/p/a?token=x#f"); got != "https://hooks.example/p/a" {
		t.Errorf("displayURL %q", got)
	}
}

func TestRotationRequestedPredicate(t *testing.T) {
	old, cur := resendWebhook(), resendWebhook()
	if rotationRequested.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}) {
		t.Error("no annotation change passed")
	}
	cur.Annotations = map[string]string{v1alpha1.AnnotationRotateSigningSecret: "1", "other": "x"}
	if !rotationRequested.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}) {
		t.Error("a new rotation request was filtered out")
	}
	old.Annotations = map[string]string{v1alpha1.AnnotationRotateSigningSecret: "1"}
	if rotationRequested.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}) {
		t.Error("another annotation's change passed")
	}
}
