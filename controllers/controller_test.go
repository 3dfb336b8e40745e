package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

const wait = 30 * time.Second

func TestCRDDefaultsEqualGoDefaults(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	for _, rw := range []*v1alpha1.ResendWebhook{
		webhook(ns, "minimal", "redis://127.0.0.1:1/0"),
		withOptionalParts(webhook(ns, "parts", "redis://127.0.0.1:1/0")),
	} {
		if err := k8s.Create(ctx, rw.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		var got v1alpha1.ResendWebhook
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rw), &got); err != nil {
			t.Fatal(err)
		}
		want := rw.DeepCopy()
		want.Default()
		if !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("%s: CRD defaults differ from Default():\n api: %+v\n  go: %+v", rw.Name, got.Spec, want.Spec)
		}
	}
}

// withOptionalParts adds the optional sections whose own defaults must match too.
func withOptionalParts(rw *v1alpha1.ResendWebhook) *v1alpha1.ResendWebhook {
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "hooks.example.com"}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x"}}
	rw.Spec.Receiver.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 5}
	return rw
}

func TestCreateRendersEveryObject(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	mustCreate(t, signingSecret(ns, "sink", map[string]string{"key": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "hooks.example.com", TLS: &v1alpha1.IngressTLS{SecretName: "tls"}}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x", SigningSecretRef: &v1alpha1.SecretKeyRef{Name: "sink", Key: "key"}}}
	mustCreate(t, rw)

	var receiver, worker appsv1.Deployment
	waitFor(t, ns, "hooks-receiver", &receiver)
	waitFor(t, ns, "hooks-worker", &worker)
	var svc corev1.Service
	waitFor(t, ns, "hooks-receiver", &svc)
	var ing networkingv1.Ingress
	waitFor(t, ns, "hooks", &ing)
	var pdb policyv1.PodDisruptionBudget
	waitFor(t, ns, "hooks-receiver", &pdb)
	assertAbsent(t, ns, "hooks-receiver", &autoscalingv2.HorizontalPodAutoscaler{}) // no autoscaling
	// Receivers are unready while Redis is down: the PDB must not block a node drain then.
	if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("PDB unhealthyPodEvictionPolicy %v, want AlwaysAllow", p)
	}

	var server v1alpha1.ResendWebhook
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rw), &server); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&receiver, &worker, &svc, &ing, &pdb} {
		if !metav1.IsControlledBy(obj, &server) {
			t.Errorf("%T %s is not controlled by the webhook: %+v", obj, obj.GetName(), obj.GetOwnerReferences())
		}
		if obj.GetLabels()[render.LabelManagedBy] != render.ManagerName || obj.GetLabels()[render.LabelInstance] != "hooks" {
			t.Errorf("%T %s labels %v", obj, obj.GetName(), obj.GetLabels())
		}
		if mf := obj.GetManagedFields(); !slices.ContainsFunc(mf, func(e metav1.ManagedFieldsEntry) bool {
			return e.Manager == controllers.FieldManager && e.Operation == metav1.ManagedFieldsOperationApply
		}) {
			t.Errorf("%T %s not server-side applied by %s: %+v", obj, obj.GetName(), controllers.FieldManager, mf)
		}
	}
	for _, d := range []*appsv1.Deployment{&receiver, &worker} {
		assertRestrictedPod(t, d)
	}
	if got, want := receiver.Spec.Template.Spec.Containers[0].Args, render.ReceiverArgs(&server); !slices.Equal(got, want) {
		t.Errorf("receiver args\n got %q\nwant %q", got, want)
	}
	if got := worker.Spec.Template.Spec.Containers[0].Args; !slices.Contains(got, "--sink-url=http://sink.example/x") ||
		!slices.Contains(got, "--sink-secret-file=/etc/rwh/sink/secret") || got[0] != "worker" {
		t.Errorf("worker args %q", got)
	}
	if s := receiver.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("receiver rollout strategy %+v, want maxUnavailable 0", receiver.Spec.Strategy)
	}
	if got := svc.Spec.Ports; len(got) != 1 || got[0].Port != 80 || got[0].TargetPort.StrVal != render.PortWebhook {
		t.Errorf("service ports %+v", got)
	}
	backend := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
	if backend.Name != "hooks-receiver" || backend.Port.Name != render.ServicePortName || ing.Spec.TLS[0].SecretName != "tls" {
		t.Errorf("ingress %+v", ing.Spec)
	}
}

// The pod settings a user writes reach the Deployments the API server stored, next to the
// operator's own (the render goldens cover every field; this covers the apply).
func TestPodSettingsReachTheDeployments(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	spread := []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway}}
	settings := v1alpha1.PodSettings{
		ImagePullSecrets:          []corev1.LocalObjectReference{{Name: "registry"}},
		ServiceAccountName:        "mail-events",
		PodMetadata:               &v1alpha1.PodMetadata{Labels: map[string]string{"team": "mail"}, Annotations: map[string]string{"cost-center": "42"}},
		PriorityClassName:         "webhooks",
		TopologySpreadConstraints: spread,
	}
	rw.Spec.Receiver.PodSettings = settings
	rw.Spec.Worker = &v1alpha1.WorkerSpec{
		PodSettings:  settings,
		Sink:         &v1alpha1.SinkSpec{URL: "http://sink.example/x"},
		Env:          []corev1.EnvVar{{Name: "DB_HOST", Value: "db.infra"}},
		EnvFrom:      []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}}},
		Volumes:      []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
	}
	mustCreate(t, rw)

	var receiver, worker appsv1.Deployment
	waitFor(t, ns, "hooks-receiver", &receiver)
	waitFor(t, ns, "hooks-worker", &worker)
	for _, d := range []*appsv1.Deployment{&receiver, &worker} {
		tpl := d.Spec.Template
		ps := tpl.Spec
		if !slices.Equal(ps.ImagePullSecrets, settings.ImagePullSecrets) || ps.ServiceAccountName != "mail-events" || ps.PriorityClassName != "webhooks" {
			t.Errorf("%s: pull secrets %v, service account %q, priority class %q", d.Name, ps.ImagePullSecrets, ps.ServiceAccountName, ps.PriorityClassName)
		}
		if tpl.Labels["team"] != "mail" || tpl.Annotations["cost-center"] != "42" || tpl.Labels[render.LabelInstance] != "hooks" {
			t.Errorf("%s: pod labels %v, annotations %v", d.Name, tpl.Labels, tpl.Annotations)
		}
		if len(ps.TopologySpreadConstraints) != 1 || ps.TopologySpreadConstraints[0].TopologyKey != "topology.kubernetes.io/zone" ||
			ps.TopologySpreadConstraints[0].LabelSelector == nil { // filled in with this component's pods
			t.Errorf("%s: topology spread %+v", d.Name, ps.TopologySpreadConstraints)
		}
	}
	c := worker.Spec.Template.Spec.Containers[0]
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "DB_HOST" && e.Value == "db.infra" }) ||
		len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "db" {
		t.Errorf("worker env %+v, envFrom %+v", c.Env, c.EnvFrom)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "scratch" && m.MountPath == "/scratch" }) ||
		!slices.ContainsFunc(worker.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "scratch" && v.EmptyDir != nil }) {
		t.Errorf("worker volumes %+v, mounts %+v", worker.Spec.Template.Spec.Volumes, c.VolumeMounts)
	}
	if got := worker.Spec.Template.Spec.Containers[0].Args; got[0] != "worker" || !slices.Contains(got, "--sink-url=http://sink.example/x") {
		t.Errorf("worker args %q: the operator's args must stay", got)
	}
}

// assertRestrictedPod checks the pod security, probes and secret handling every Deployment has.
func assertRestrictedPod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: container security context %+v", d.Name, sc)
	}
	if ps.SecurityContext == nil || !*ps.SecurityContext.RunAsNonRoot || *ps.SecurityContext.RunAsUser != render.NonRootUID {
		t.Errorf("%s: pod security context %+v", d.Name, ps.SecurityContext)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.StrVal != render.PortAdmin ||
		c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.StrVal != render.PortAdmin {
		t.Errorf("%s: probes %+v %+v", d.Name, c.LivenessProbe, c.ReadinessProbe)
	}
	if len(c.Env) > 0 || len(c.EnvFrom) > 0 {
		t.Errorf("%s: env must not be used: %+v %+v", d.Name, c.Env, c.EnvFrom)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("%s: default resource requests missing: %+v", d.Name, c.Resources)
	}
	if d.Spec.Template.Annotations[render.ConfigHashAnnotation] == "" {
		t.Errorf("%s: no config hash annotation", d.Name)
	}
}

func TestUpdatesReachObjectsAndRemovalsDelete(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "a.example.com"}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x"}}
	mustCreate(t, rw)
	var worker appsv1.Deployment
	waitFor(t, ns, "hooks-worker", &worker)
	waitFor(t, ns, "hooks", &networkingv1.Ingress{})
	oldHash := worker.Spec.Template.Annotations[render.ConfigHashAnnotation]

	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Retry.MaxAttempts = new(int32(7))
		rw.Spec.Retry.MinBackoff = &metav1.Duration{Duration: 3 * time.Second}
		rw.Spec.Receiver.Replicas = new(int32(4))
		rw.Spec.Ingress.Host = "b.example.com"
	})
	testutil.Eventually(t, wait, "worker args follow the retry policy", func() error {
		var d appsv1.Deployment
		if err := get(ns, "hooks-worker", &d); err != nil {
			return err
		}
		args := d.Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(args, "--max-attempts=7") || !slices.Contains(args, "--min-backoff=3s") {
			return fmt.Errorf("args %q", args)
		}
		if d.Spec.Template.Annotations[render.ConfigHashAnnotation] == oldHash {
			return errors.New("config hash unchanged: pods would not roll")
		}
		return nil
	})
	testutil.Eventually(t, wait, "receiver replicas and ingress host follow", func() error {
		var d appsv1.Deployment
		var ing networkingv1.Ingress
		if err := errors.Join(get(ns, "hooks-receiver", &d), get(ns, "hooks", &ing)); err != nil {
			return err
		}
		if *d.Spec.Replicas != 4 || ing.Spec.Rules[0].Host != "b.example.com" {
			return fmt.Errorf("replicas %d host %q", *d.Spec.Replicas, ing.Spec.Rules[0].Host)
		}
		return nil
	})

	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Ingress = nil
		rw.Spec.Worker = nil
		rw.Spec.Receiver.Replicas = new(int32(1)) // one receiver: no PDB
	})
	testutil.Eventually(t, wait, "ingress, worker and PDB deleted", func() error {
		return errors.Join(
			absent(ns, "hooks", &networkingv1.Ingress{}),
			absent(ns, "hooks-worker", &appsv1.Deployment{}),
			absent(ns, "hooks-receiver", &policyv1.PodDisruptionBudget{}))
	})
	testutil.Eventually(t, wait, "stale conditions removed", func() error {
		var got v1alpha1.ResendWebhook
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rw), &got); err != nil {
			return err
		}
		for _, typ := range []string{v1alpha1.ConditionWorkerAvailable, v1alpha1.ConditionIngressReady} {
			if meta.FindStatusCondition(got.Status.Conditions, typ) != nil {
				return fmt.Errorf("condition %s still present", typ)
			}
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
		}
		return nil
	})

	// Autoscaling: an HPA appears and the Deployment leaves replicas to it.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) {
		rw.Spec.Receiver.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 6}
	})
	var hpa autoscalingv2.HorizontalPodAutoscaler
	waitFor(t, ns, "hooks-receiver", &hpa)
	if hpa.Spec.MaxReplicas != 6 || *hpa.Spec.MinReplicas != v1alpha1.DefaultAutoscalingMin || hpa.Spec.ScaleTargetRef.Name != "hooks-receiver" {
		t.Errorf("hpa %+v", hpa.Spec)
	}
	waitFor(t, ns, "hooks-receiver", &policyv1.PodDisruptionBudget{}) // minReplicas 2 → PDB again
}

func TestMissingSecretReportedAndRecovered(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.SigningSecret.Keys = []string{"old", "new"}
	mustCreate(t, rw)
	waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady)
	testutil.Eventually(t, wait, "warning event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonSecretNotFound) })
	// The Deployment exists anyway: the signing volume is optional, pods start and get ready later.
	waitFor(t, ns, "hooks-receiver", &appsv1.Deployment{})

	sec := signingSecret(ns, "hooks-signing", map[string]string{"old": "not-a-secret"})
	mustCreate(t, sec)
	c := waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionFalse, v1alpha1.ReasonInvalidSecret)
	if !strings.Contains(c.Message, "old (not a whsec_ secret)") {
		t.Errorf("message %q does not name the invalid key and why", c.Message)
	}
	testutil.Eventually(t, wait, "invalid secret event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonInvalidSecret) })

	// Rotation in progress: one valid key, the other absent → resolved, absent key mentioned.
	sec.StringData = map[string]string{"old": validSecret}
	if err := k8s.Update(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	c = waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionTrue, v1alpha1.ReasonSecretsResolved)
	if !strings.Contains(c.Message, "absent keys new") {
		t.Errorf("message %q does not mention the absent key", c.Message)
	}
}

func TestDeletedDeploymentIsRecreated(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	mustCreate(t, webhook(ns, "hooks", sharedRed.URL()))
	var d appsv1.Deployment
	waitFor(t, ns, "hooks-receiver", &d)
	if err := k8s.Delete(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "receiver Deployment recreated", func() error {
		var again appsv1.Deployment
		if err := get(ns, "hooks-receiver", &again); err != nil {
			return err
		}
		if again.UID == d.UID {
			return errors.New("still the old object")
		}
		return nil
	})
}

func TestStatusFollowsAvailabilityIngressAndRedis(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	red := testutil.StartRedis(t) // own server: this test stops it
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", red.URL())
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Path: "/resend"} // no host: URL from the LB address
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x"}}
	mustCreate(t, rw)

	waitCondition(t, rw, v1alpha1.ConditionQueueReachable, metav1.ConditionTrue, v1alpha1.ReasonReachable)
	// No deployment controller has seen the new Deployment yet.
	waitCondition(t, rw, v1alpha1.ConditionReceiverAvailable, metav1.ConditionFalse, v1alpha1.ReasonProgressing)
	got := waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady)
	_ = got

	// No deployment controller in envtest: play its part.
	setAvailable(t, ns, "hooks-receiver", 2)
	setAvailable(t, ns, "hooks-worker", 1)
	var ing networkingv1.Ingress
	waitFor(t, ns, "hooks", &ing)
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
	if err := k8s.Status().Update(ctx, &ing); err != nil {
		t.Fatal(err)
	}
	// What users run: kubectl wait on the Ready condition.
	out, err := exec.Command(testutil.Kubectl(t), "--kubeconfig", kubeconfig, "-n", ns, "wait",
		"--for=condition=Ready", "rwh/hooks", "--timeout=30s").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl wait: %v\n%s", err, out)
	}
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	// The test Redis runs without AOF or snapshots: advice, not a reason to be unready.
	durable := waitCondition(t, rw, v1alpha1.ConditionQueueDurable, metav1.ConditionFalse, v1alpha1.ReasonNoPersistence)
	if !strings.Contains(durable.Message, "appendonly no") {
		t.Errorf("QueueDurable message %q", durable.Message)
	}
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	st := currentStatus(t, rw)
	if st.URL != "http://203.0.113.7/resend" || st.Receiver.ReadyReplicas != 2 || st.Worker.ReadyReplicas != 1 {
		t.Errorf("status url %q receiver %d worker %d", st.URL, st.Receiver.ReadyReplicas, st.Worker.ReadyReplicas)
	}
	if st.Queue.Name != ns+".hooks" || st.Queue.Pending != 0 {
		t.Errorf("queue status before any task %+v", st.Queue)
	}

	// Queue figures follow what is in Redis.
	ac := asynq.NewClient(asynq.RedisClientOpt{Addr: red.Addr()})
	defer func() { _ = ac.Close() }()
	for i := range 3 {
		if _, err := ac.Enqueue(asynq.NewTask("resend:email.sent", []byte("{}")), asynq.Queue(ns+".hooks"), asynq.TaskID(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ac.Enqueue(asynq.NewTask("resend:email.sent", []byte("{}")), asynq.Queue(ns+".hooks"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "queue figures", func() error {
		q := currentStatus(t, rw).Queue
		if q.Pending != 3 || q.Scheduled != 1 || q.Active != 0 || q.Retry != 0 || q.Archived != 0 {
			return fmt.Errorf("queue %+v", q)
		}
		return nil
	})
	// The manager exports the same figures.
	for state, want := range map[string]float64{"pending": 3, "scheduled": 1, "archived": 0} {
		if got, ok := gaugeValue("rwh_queue_tasks", map[string]string{"namespace": ns, "name": "hooks", "state": state}); !ok || got != want {
			t.Errorf("rwh_queue_tasks{state=%q} = %v (present %v), want %v", state, got, ok, want)
		}
	}
	if got, ok := gaugeValue("rwh_webhook_condition", map[string]string{"namespace": ns, "name": "hooks", "type": v1alpha1.ConditionReady}); !ok || got != 1 {
		t.Errorf("rwh_webhook_condition{type=Ready} = %v (present %v), want 1", got, ok)
	}

	red.Stop()
	c := waitCondition(t, rw, v1alpha1.ConditionQueueReachable, metav1.ConditionFalse, v1alpha1.ReasonUnreachable)
	// The class of the error, never the dial text with its address.
	if c.Message != "Redis unreachable: connection refused" {
		t.Errorf("QueueReachable message %q", c.Message)
	}
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady)
	testutil.Eventually(t, wait, "unreachable event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonUnreachable) })
	if err := red.Start(); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)

	// Removing the ingress drops IngressReady and the URL; Ready stays True.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.Ingress = nil })
	testutil.Eventually(t, wait, "IngressReady and URL dropped", func() error {
		st := currentStatus(t, rw)
		if meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionIngressReady) != nil || st.URL != "" {
			return fmt.Errorf("status %+v", st)
		}
		if !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) {
			return errors.New("not ready")
		}
		return nil
	})

	// A deleted webhook's series go with it.
	if err := k8s.Delete(ctx, rw); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "metrics of the deleted webhook dropped", func() error {
		if _, ok := gaugeValue("rwh_queue_tasks", map[string]string{"namespace": ns, "name": "hooks", "state": "pending"}); ok {
			return errors.New("rwh_queue_tasks still exported")
		}
		if _, ok := gaugeValue("rwh_webhook_condition", map[string]string{"namespace": ns, "name": "hooks", "type": v1alpha1.ConditionReady}); ok {
			return errors.New("rwh_webhook_condition still exported")
		}
		return nil
	})
}

func TestSteadyStateMakesNoWrites(t *testing.T) {
	useSharedManager(t)
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "hooks.example.com"}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{Sink: &v1alpha1.SinkSpec{URL: "http://sink.example/x"}}
	rw.Spec.Receiver.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 4}
	mustCreate(t, rw)
	setAvailable(t, ns, "hooks-receiver", 2)
	setAvailable(t, ns, "hooks-worker", 1)
	waitCondition(t, rw, v1alpha1.ConditionQueueReachable, metav1.ConditionTrue, v1alpha1.ReasonReachable)
	waitCondition(t, rw, v1alpha1.ConditionReceiverAvailable, metav1.ConditionTrue, v1alpha1.ReasonAvailable)

	kinds := map[string]client.Object{
		"rwh/hooks": &v1alpha1.ResendWebhook{}, "deploy/hooks-receiver": &appsv1.Deployment{},
		"deploy/hooks-worker": &appsv1.Deployment{}, "svc/hooks-receiver": &corev1.Service{},
		"ing/hooks": &networkingv1.Ingress{}, "pdb/hooks-receiver": &policyv1.PodDisruptionBudget{},
		"hpa/hooks-receiver": &autoscalingv2.HorizontalPodAutoscaler{},
	}
	versions := func() (map[string]string, error) {
		out := map[string]string{}
		for k, obj := range kinds {
			if err := get(ns, strings.SplitN(k, "/", 2)[1], obj); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = obj.GetResourceVersion()
		}
		return out, nil
	}
	// Settled: nothing changes for 3 s (three status refreshes).
	var before map[string]string
	testutil.Eventually(t, wait, "settled", func() error {
		v1, err := versions()
		if err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			v2, err := versions()
			if err != nil {
				return err
			}
			if !maps.Equal(v1, v2) {
				return fmt.Errorf("still changing: %v → %v", v1, v2)
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
		before = v1
		return nil
	})

	// Full resync: a new manager with empty caches and memory reconciles everything again.
	reconciles := reconcileTotal()
	restartSharedManager(t)
	testutil.Eventually(t, wait, "resync reconciled the webhook", func() error {
		if reconcileTotal() < reconciles+3 { // initial + periodic refreshes
			return errors.New("not yet")
		}
		return nil
	})
	// The new manager reads each referenced Secret's value once; then only its metadata
	// cache is consulted, so refreshes read no Secret from the API server.
	secretGets := func() int { return apiserverRequests(t, "GET")["GET secrets"] }
	var gets int
	testutil.Eventually(t, wait, "Secret reads settled", func() error {
		a := secretGets()
		time.Sleep(1500 * time.Millisecond) // observe a window of refreshes
		if gets = secretGets(); gets != a {
			return fmt.Errorf("still reading Secrets: %d → %d GETs", a, gets)
		}
		return nil
	})
	// And an unrelated Secret touch in the same namespace triggers nothing either.
	mustCreate(t, signingSecret(ns, "unrelated", map[string]string{"x": "y"}))
	consistently(t, 3*time.Second, "no writes and no Secret reads in steady state", func() error {
		after, err := versions()
		if err != nil {
			return err
		}
		for k, rv := range before {
			if after[k] != rv {
				return fmt.Errorf("%s was written in steady state: resourceVersion %s → %s", k, rv, after[k])
			}
		}
		if n := secretGets(); n != gets {
			return fmt.Errorf("%d Secret GETs in steady state", n-gets)
		}
		return nil
	})
}

// --- helpers ---

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func get(ns, name string, obj client.Object) error {
	return k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
}

func waitFor(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	testutil.Eventually(t, wait, fmt.Sprintf("%T %s exists", obj, name), func() error { return get(ns, name, obj) })
}

func absent(ns, name string, obj client.Object) error {
	err := get(ns, name, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("%T %s still exists", obj, name)
	}
	return err
}

func assertAbsent(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	if err := absent(ns, name, obj); err != nil {
		t.Error(err)
	}
}

// update changes the webhook, retrying on conflicts with the status writer.
func update(t *testing.T, rw *v1alpha1.ResendWebhook, change func(*v1alpha1.ResendWebhook)) {
	t.Helper()
	testutil.Eventually(t, wait, "update webhook", func() error {
		var cur v1alpha1.ResendWebhook
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rw), &cur); err != nil {
			return err
		}
		change(&cur)
		return k8s.Update(context.Background(), &cur)
	})
}

func currentStatus(t *testing.T, rw *v1alpha1.ResendWebhook) v1alpha1.ResendWebhookStatus {
	t.Helper()
	var cur v1alpha1.ResendWebhook
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rw), &cur); err != nil {
		t.Fatal(err)
	}
	return cur.Status
}

func waitCondition(t *testing.T, rw *v1alpha1.ResendWebhook, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var found metav1.Condition
	testutil.Eventually(t, wait, fmt.Sprintf("%s=%s (%s)", typ, status, reason), func() error {
		var cur v1alpha1.ResendWebhook
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rw), &cur); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, typ)
		if c == nil {
			return errors.New("condition absent")
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s=%s reason %s: %s", typ, c.Status, c.Reason, c.Message)
		}
		if c.ObservedGeneration != cur.Generation || cur.Status.ObservedGeneration != cur.Generation {
			return errors.New("observedGeneration behind")
		}
		found = *c
		return nil
	})
	return found
}

// setAvailable plays the deployment controller: marks the Deployment available.
func setAvailable(t *testing.T, ns, name string, ready int32) {
	t.Helper()
	testutil.Eventually(t, wait, "mark "+name+" available", func() error {
		var d appsv1.Deployment
		if err := get(ns, name, &d); err != nil {
			return err
		}
		d.Status.ObservedGeneration = d.Generation
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas, d.Status.UpdatedReplicas = ready, ready, ready, ready
		d.Status.Conditions = []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}}
		return k8s.Status().Update(context.Background(), &d)
	})
}

// warningEvent finds a Warning event with reason about the webhook (events.k8s.io/v1).
func warningEvent(ns, name, reason string) error {
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "ResendWebhook" && e.Regarding.Name == name && e.Type == corev1.EventTypeWarning && e.Reason == reason {
			return nil
		}
	}
	return fmt.Errorf("no Warning event %s for %s among %d events", reason, name, len(list.Items))
}

func TestApplyFailureReportedOnce(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	ns := namespace(t)
	mustCreate(t, signingSecret(ns, "hooks-signing", map[string]string{"signing-secret": validSecret}))
	// A quota of zero Services: the API server refuses to create the receivers' Service. We
	// play the quota controller and fill in the quota's status.
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-services"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceServices: resource.MustParse("0")}},
	}
	mustCreate(t, quota)
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourceServices: resource.MustParse("0")}}
	if err := k8s.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	rw := webhook(ns, "hooks", sharedRed.URL())
	mustCreate(t, rw)
	c := waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonApplyFailed)
	if !strings.Contains(c.Message, "Service hooks-receiver") {
		t.Errorf("message %q does not name the object", c.Message)
	}
	waitFor(t, ns, "hooks-receiver", &appsv1.Deployment{}) // the other children are applied all the same
	testutil.Eventually(t, wait, "ApplyFailed event", func() error { return warningEvent(ns, "hooks", v1alpha1.ReasonApplyFailed) })
	// Retries keep failing (with backoff), but the event is not repeated for the same failure:
	// watch a 3 s window.
	consistently(t, 3*time.Second, "one ApplyFailed event", eventCount(t, ns, v1alpha1.ReasonApplyFailed, 1))
	// Lifting the quota lets the retry through.
	if err := k8s.Delete(ctx, quota); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ns, "hooks-receiver", &corev1.Service{})
	waitCondition(t, rw, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady)
}

// countEvents counts the events with reason in ns, including repeats folded into a series.
func countEvents(t *testing.T, ns, reason string) int {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Reason != reason {
			continue
		}
		n++
		if e.Series != nil && e.Series.Count > 1 {
			n += int(e.Series.Count) - 1
		}
	}
	return n
}

// Rotation reaches pods through the kubelet's refresh of the mounted Secret (the receiver
// rescans its directory), so changing Secret contents must not roll the receivers; changing the
// list of keys changes the projected files and does.
func TestSecretRotationDoesNotRollPods(t *testing.T) {
	useSharedManager(t)
	ctx := context.Background()
	ns := namespace(t)
	sec := signingSecret(ns, "hooks-signing", map[string]string{"old": validSecret})
	mustCreate(t, sec)
	rw := webhook(ns, "hooks", sharedRed.URL())
	rw.Spec.SigningSecret.Keys = []string{"old", "new"}
	mustCreate(t, rw)
	c := waitCondition(t, rw, v1alpha1.ConditionSecretResolved, metav1.ConditionTrue, v1alpha1.ReasonSecretsResolved)
	if !strings.Contains(c.Message, "absent keys new") {
		t.Errorf("message %q", c.Message)
	}
	var d appsv1.Deployment
	waitFor(t, ns, "hooks-receiver", &d)
	items := d.Spec.Template.Spec.Volumes[0].Projected.Sources[0].Secret.Items
	if len(items) != 2 || items[1].Key != "new" {
		t.Fatalf("projected items %+v", items)
	}

	// Step 1 of a rotation: the new key appears in the Secret.
	sec.StringData = map[string]string{"old": validSecret, "new": "whsec_bmV3IHNlY3JldCB2YWx1ZQ=="}
	if err := k8s.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "both keys valid", func() error {
		c := meta.FindStatusCondition(currentStatus(t, rw).Conditions, v1alpha1.ConditionSecretResolved)
		if c == nil || !strings.Contains(c.Message, "valid keys old,new") {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	var after appsv1.Deployment
	if err := get(ns, "hooks-receiver", &after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != d.ResourceVersion {
		t.Errorf("Secret content change rewrote the Deployment (resourceVersion %s → %s)", d.ResourceVersion, after.ResourceVersion)
	}

	// Last step: the old key leaves the list → the pod template (and its hash) changes.
	update(t, rw, func(rw *v1alpha1.ResendWebhook) { rw.Spec.SigningSecret.Keys = []string{"new"} })
	testutil.Eventually(t, wait, "pods roll for the new key list", func() error {
		var now appsv1.Deployment
		if err := get(ns, "hooks-receiver", &now); err != nil {
			return err
		}
		if now.Spec.Template.Annotations[render.ConfigHashAnnotation] == d.Spec.Template.Annotations[render.ConfigHashAnnotation] {
			return errors.New("config hash unchanged")
		}
		return nil
	})
}
