package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func TestQueueMonitorsShareAndCloseClients(t *testing.T) {
	red := testutil.StartRedis(t)
	q := newQueueMonitors(time.Second)
	a, b := types.NamespacedName{Namespace: "n", Name: "a"}, types.NamespacedName{Namespace: "n", Name: "b"}
	cfg := redisconn.Config{URL: red.URL()}
	ma, err := q.get(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := q.get(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ma != mb || q.open() != 1 {
		t.Fatalf("same Redis settings should share one client; open=%d", q.open())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if got, err := ma.read(ctx, shard.Layout{Queue: "never.used", Shards: 1}, true); err != nil || got.figures.Pending != 0 || got.figures.Name != "never.used" || len(got.sink) != 0 {
		t.Fatalf("figures of a missing queue = %+v, %v; want zeros and no sink reports", got, err)
	}
	// b moves to other credentials: a second client; a keeps the first.
	if _, err := q.get(b, redisconn.Config{URL: red.URL(), Password: "other"}); err != nil {
		t.Fatal(err)
	}
	if q.open() != 2 {
		t.Fatalf("open=%d, want 2", q.open())
	}
	q.release(a)
	q.release(b)
	if q.open() != 0 {
		t.Fatalf("clients left open after every webhook went away: %d", q.open())
	}
	if err := ma.client.Ping(ctx).Err(); err == nil {
		t.Fatal("released client still usable: it was not closed")
	}
}

func TestDesiredStatus(t *testing.T) {
	rw := &v1alpha1.ResendWebhook{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w", Generation: 3}}
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Host: "hooks.example.com", Path: "/in", TLS: &v1alpha1.IngressTLS{SecretName: "t"}}
	ok := func(typ string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: "OK"}
	}
	available := availableDeployment(2)
	ing := &networkingv1.Ingress{}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{Hostname: "lb.example.net"}}
	obs := observation{secrets: ok(v1alpha1.ConditionSecretResolved), receiver: available, ingress: ing, queue: queueObservation{reachable: ok(v1alpha1.ConditionQueueReachable)}}

	st := desiredStatus(rw, obs)
	if st.URL != "https://hooks.example.com/in" || st.Receiver.ReadyReplicas != 2 || st.ObservedGeneration != 3 || st.Queue.Name != "ns.w" {
		t.Fatalf("status %+v", st)
	}
	if !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) || meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionWorkerAvailable) != nil {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	// Same observation again: identical status (lastTransitionTime kept) → no write.
	rw.Status = st
	if again := desiredStatus(rw, obs); !equalStatus(again, st) {
		t.Fatalf("status changed on an unchanged world:\n%+v\n%+v", again, st)
	}
	// Without a host the URL uses the load-balancer address; no TLS → http.
	rw.Spec.Ingress = &v1alpha1.IngressSpec{Path: "/"}
	if got := desiredStatus(rw, obs).URL; got != "http://lb.example.net/" {
		t.Fatalf("url %q", got)
	}
	// Redis down: not ready, figures kept.
	rw.Status.Queue.Pending = 7
	obs.queue = queueObservation{reachable: metav1.Condition{Type: v1alpha1.ConditionQueueReachable, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonUnreachable, Message: "x"}}
	st = desiredStatus(rw, obs)
	if meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) || st.Queue.Pending != 7 {
		t.Fatalf("status %+v", st)
	}
}

func equalStatus(a, b v1alpha1.ResendWebhookStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

func TestEndpointURL(t *testing.T) {
	lb := func(addr string, ports ...int32) *networkingv1.Ingress {
		ing := &networkingv1.Ingress{}
		st := networkingv1.IngressLoadBalancerIngress{IP: addr}
		for _, p := range ports {
			st.Ports = append(st.Ports, networkingv1.IngressPortStatus{Port: p})
		}
		ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{st}
		return ing
	}
	withIngress := func(in *v1alpha1.IngressSpec) *v1alpha1.ResendWebhook {
		return &v1alpha1.ResendWebhook{Spec: v1alpha1.ResendWebhookSpec{Ingress: in}}
	}
	tests := []struct {
		name string
		rw   *v1alpha1.ResendWebhook
		ing  *networkingv1.Ingress
		want string
	}{
		{"no ingress", withIngress(nil), nil, ""},
		{"host, no tls", withIngress(&v1alpha1.IngressSpec{Host: "hooks.example.com", Path: "/resend"}), nil, "http://hooks.example.com/resend"},
		{"host with tls", withIngress(&v1alpha1.IngressSpec{Host: "hooks.example.com", TLS: &v1alpha1.IngressTLS{SecretName: "t"}}), lb("10.0.0.1", 8080), "https://hooks.example.com/"},
		{"lb address, no address yet", withIngress(&v1alpha1.IngressSpec{Path: "/"}), lb(""), ""},
		{"lb address, default port", withIngress(&v1alpha1.IngressSpec{Path: "/"}), lb("203.0.113.7", 80), "http://203.0.113.7/"},
		{"lb address with port", withIngress(&v1alpha1.IngressSpec{Path: "/x"}), lb("127.0.0.1", 8080), "http://127.0.0.1:8080/x"},
		{"IPv6 lb address", withIngress(&v1alpha1.IngressSpec{Path: "/x"}), lb("2001:db8::7"), "http://[2001:db8::7]/x"},
		{"IPv6 lb address with port", withIngress(&v1alpha1.IngressSpec{Path: "/x"}), lb("2001:db8::7", 8443), "http://[2001:db8::7]:8443/x"},
		{"wildcard host names no URL", withIngress(&v1alpha1.IngressSpec{Host: "*.example.com", Path: "/"}), lb("203.0.113.7"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endpointURL(tt.rw, tt.ing); got != tt.want {
				t.Fatalf("endpointURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// The Inspector's calls take no context: a Redis that accepts connections but never answers
// must still release the reconcile worker after about the configured timeout.
func TestQueueMonitorTimesOutOnHangingRedis(t *testing.T) {
	addr := silentListener(t)
	const timeout = 200 * time.Millisecond
	q := newQueueMonitors(timeout)
	t.Cleanup(q.closeAll)
	m, err := q.get(types.NamespacedName{Namespace: "n", Name: "a"}, redisconn.Config{URL: "redis://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = m.inspector.GetQueueInfo("n.a")
	if err == nil {
		t.Fatal("GetQueueInfo succeeded against a silent server")
	}
	if took := time.Since(start); took > 10*timeout {
		t.Fatalf("GetQueueInfo took %s with a %s timeout", took, timeout)
	}
}

func availableDeployment(replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "w-receiver", Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: new(replicas)},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: "True"},
				{Type: appsv1.DeploymentProgressing, Status: "True", Reason: "NewReplicaSetAvailable"},
			},
		},
	}
}

// Readiness follows kstatus: the latest generation observed, every desired pod updated and
// available, no old pod left, no exceeded progress deadline; zero replicas are not ready.
func TestDeploymentCondition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(d *appsv1.Deployment)
		status metav1.ConditionStatus
		reason string
	}{
		{"current and available", func(*appsv1.Deployment) {}, metav1.ConditionTrue, v1alpha1.ReasonAvailable},
		{"new generation not observed", func(d *appsv1.Deployment) { d.Generation = 3 }, metav1.ConditionFalse, v1alpha1.ReasonProgressing},
		{"pods not updated yet", func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }, metav1.ConditionFalse, v1alpha1.ReasonProgressing},
		{"old pods left", func(d *appsv1.Deployment) { d.Status.Replicas = 3 }, metav1.ConditionFalse, v1alpha1.ReasonProgressing},
		{"updated but not available", func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 }, metav1.ConditionFalse, v1alpha1.ReasonUnavailable},
		{"Available condition false", func(d *appsv1.Deployment) { d.Status.Conditions[0].Status = "False" }, metav1.ConditionFalse, v1alpha1.ReasonUnavailable},
		{"stuck rollout", func(d *appsv1.Deployment) {
			d.Status.UpdatedReplicas = 0
			d.Status.Conditions[1] = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: "False", Reason: "ProgressDeadlineExceeded",
				Message: `ReplicaSet "w-receiver-7d9" has timed out progressing.`}
		}, metav1.ConditionFalse, v1alpha1.ReasonRolloutFailed},
		{"scaled to zero", func(d *appsv1.Deployment) {
			d.Spec.Replicas = new(int32(0))
			d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 0, 0, 0, 0
		}, metav1.ConditionFalse, v1alpha1.ReasonScaledToZero},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := availableDeployment(2)
			tc.change(d)
			c := deploymentCondition(v1alpha1.ConditionReceiverAvailable, d)
			if c.Status != tc.status || c.Reason != tc.reason {
				t.Fatalf("%s %s: %s, want %s %s", c.Status, c.Reason, c.Message, tc.status, tc.reason)
			}
		})
	}
	if c := deploymentCondition(v1alpha1.ConditionWorkerAvailable, nil); c.Reason != v1alpha1.ReasonDeploymentMissing {
		t.Fatalf("missing Deployment: %+v", c)
	}
}

// Ready's reason is the most urgent one among the failing conditions; any other failure is
// NotReady, and the message lists every failing condition.
func TestReadyConditionPrecedence(t *testing.T) {
	ok := func(typ string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: "OK"}
	}
	bad := func(typ, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason, Message: typ + " is bad"}
	}
	for _, tc := range []struct {
		name  string
		conds []metav1.Condition
		want  string
	}{
		{"all true", []metav1.Condition{ok("A"), ok("B")}, v1alpha1.ReasonReady},
		{"plain failure", []metav1.Condition{ok("A"), bad("QueueReachable", v1alpha1.ReasonUnreachable)}, v1alpha1.ReasonNotReady},
		{"scaled to zero", []metav1.Condition{bad("QueueReachable", v1alpha1.ReasonUnreachable), bad("ReceiverAvailable", v1alpha1.ReasonScaledToZero)}, v1alpha1.ReasonScaledToZero},
		{"rollout before zero", []metav1.Condition{bad("WorkerAvailable", v1alpha1.ReasonScaledToZero), bad("ReceiverAvailable", v1alpha1.ReasonRolloutFailed)}, v1alpha1.ReasonRolloutFailed},
		{"conflict before rollout", []metav1.Condition{bad("ReceiverAvailable", v1alpha1.ReasonRolloutFailed), bad(conditionApplied, v1alpha1.ReasonNameConflict)}, v1alpha1.ReasonNameConflict},
		{"policy first", []metav1.Condition{bad(conditionApplied, v1alpha1.ReasonPolicyViolation), bad("ReceiverAvailable", v1alpha1.ReasonRolloutFailed)}, v1alpha1.ReasonPolicyViolation},
		{"unknown blocks", []metav1.Condition{{Type: "A", Status: metav1.ConditionUnknown, Reason: "X"}}, v1alpha1.ReasonNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readyCondition(tc.conds)
			if got.Reason != tc.want {
				t.Fatalf("reason %s (%s), want %s", got.Reason, got.Message, tc.want)
			}
			if (got.Status == metav1.ConditionTrue) != (tc.want == v1alpha1.ReasonReady) {
				t.Fatalf("status %s with reason %s", got.Status, got.Reason)
			}
			for _, c := range tc.conds {
				if c.Status != metav1.ConditionTrue && !strings.Contains(got.Message, c.Message) {
					t.Errorf("message %q does not mention %q", got.Message, c.Message)
				}
			}
		})
	}
}

func TestSinkCondition(t *testing.T) {
	now := time.Now()
	rep := func(state, class string, since time.Duration) queuestore.SinkReport {
		return queuestore.SinkReport{State: state, ErrorClass: class, Since: now.Add(-since)}
	}
	for _, tc := range []struct {
		name    string
		reports []queuestore.SinkReport
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{"no worker yet", nil, metav1.ConditionUnknown, v1alpha1.ReasonNoReports, "no worker has reported"},
		{"breakers switched off", []queuestore.SinkReport{rep(queuestore.SinkDisabled, "", 0)}, metav1.ConditionUnknown, v1alpha1.ReasonNoReports, "without a circuit breaker"},
		{"all deliver", []queuestore.SinkReport{rep(queuestore.SinkClosed, "", 0), rep(queuestore.SinkClosed, "", 0)}, metav1.ConditionTrue, v1alpha1.ReasonSinkReachable, "2 workers"},
		{"one holds", []queuestore.SinkReport{rep(queuestore.SinkClosed, "", 0), rep(queuestore.SinkOpen, "http 503", time.Minute)}, metav1.ConditionFalse, v1alpha1.ReasonSinkUnavailable, "1 of 2 workers hold deliveries since"},
		{"the oldest outage's class", []queuestore.SinkReport{rep(queuestore.SinkOpen, "timeout", time.Second), rep(queuestore.SinkOpen, "connection refused", time.Hour)}, metav1.ConditionFalse, v1alpha1.ReasonSinkUnavailable, "connection refused"},
	} {
		c := sinkCondition(tc.reports)
		if c.Type != v1alpha1.ConditionSinkAvailable || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
			t.Errorf("%s: %+v", tc.name, c)
		}
	}

	// Folded into Ready only when False: Unknown keeps a new webhook Ready.
	rw := &v1alpha1.ResendWebhook{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"}}
	rw.Spec.Worker = &v1alpha1.WorkerSpec{}
	ok := func(typ string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: "OK"}
	}
	obs := observation{secrets: ok(v1alpha1.ConditionSecretResolved), receiver: availableDeployment(2), worker: availableDeployment(1),
		queue: queueObservation{reachable: ok(v1alpha1.ConditionQueueReachable), sink: sinkCondition(nil)}}
	st := desiredStatus(rw, obs)
	if !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) || meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSinkAvailable) == nil {
		t.Fatalf("Unknown SinkAvailable: %+v", st.Conditions)
	}
	obs.queue.sink = sinkCondition([]queuestore.SinkReport{rep(queuestore.SinkOpen, "http 503", 0)})
	st = desiredStatus(rw, obs)
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSinkUnavailable {
		t.Fatalf("False SinkAvailable: Ready %+v", c)
	}
	rw.Spec.Worker = nil
	rw.Status = st
	if st = desiredStatus(rw, obs); meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSinkAvailable) != nil {
		t.Fatalf("SinkAvailable kept without spec.worker: %+v", st.Conditions)
	}
}

func TestShardChange(t *testing.T) {
	for _, tc := range []struct {
		name        string
		st          v1alpha1.QueueStatus
		want        int32
		changed     bool
		wantPrevous []int32
	}{
		{"new webhook, one shard", v1alpha1.QueueStatus{}, 1, false, nil},
		{"new or pre-sharding webhook, more shards", v1alpha1.QueueStatus{}, 4, true, []int32{1}},
		{"unchanged", v1alpha1.QueueStatus{Shards: 4, PreviousShards: []int32{1}}, 4, false, []int32{1}},
		{"another change while draining", v1alpha1.QueueStatus{Shards: 4, PreviousShards: []int32{1}}, 2, true, []int32{1, 4}},
		{"back to a draining count", v1alpha1.QueueStatus{Shards: 4, PreviousShards: []int32{1, 2}}, 2, true, []int32{1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, changed := shardChange(tc.st, tc.want)
			if changed != tc.changed || !slices.Equal(prev, tc.wantPrevous) {
				t.Errorf("shardChange(%+v, %d) = %v, %t; want %v, %t", tc.st, tc.want, prev, changed, tc.wantPrevous, tc.changed)
			}
		})
	}
}
