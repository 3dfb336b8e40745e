// Package e2e is the end-to-end test: the operator's manager on a real control plane with
// Kubernetes' own controllers (Deployments, ReplicaSets, garbage collection, EndpointSlices), a
// node agent that runs the receiver and worker pods as local processes of the real binary and
// serves the Ingress, Redis, an echo sink and the Resend simulator the operator registers the
// endpoint with, driven the way a user drives them — with kubectl — and with events that
// "Resend" signs and delivers through the Ingress.
package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	corev1 "k8s.io/api/core/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendsim"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/sender"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/nodeagent"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/sandbox"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/sink"
)

const (
	namespace = "e2e"
	name      = "hooks"
	host      = "hooks.e2e.local"
	path      = "/resend"
)

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	began := time.Now()
	testutil.KubeAssets(t)
	kubectlBin := testutil.Kubectl(t)
	bin := testutil.OperatorBinary(t)
	t.Logf("binary built in %s", time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "sandbox.log"))
	if err != nil {
		t.Fatal(err)
	}
	podOut, err := os.Create(filepath.Join(dir, "pods.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpTail(t, logFile.Name(), 60)
			dumpTail(t, podOut.Name(), 80)
		}
		_ = logFile.Close()
		_ = podOut.Close()
	})
	sinkSecret := signing.NewSecret()
	sb, err := sandbox.Start(ctx, sandbox.Options{
		Dir:           dir,
		Binary:        bin,
		SinkSecret:    sinkSecret,
		StatusRefresh: 2 * time.Second,
		Log:           slog.New(slog.NewJSONHandler(logFile, nil)),
		PodOutput:     podOut,
		// 1e-3: Resend's 5 s and 5 min retries take 5 ms and 300 ms; the 24 h dual-signing
		// window 86 s, longer than this test.
		ResendAPIKeys:   []string{apiKey},
		ResendTimeScale: 1e-3,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			start := time.Now()
			sb.Stop()
			t.Logf("sandbox stopped in %s", time.Since(start).Round(time.Millisecond))
		}
	}
	t.Cleanup(stop)
	t.Logf("sandbox up in %s (ingress %s, redis %s, sink %s)", time.Since(began).Round(time.Millisecond), sb.IngressAddr(), sb.RedisURL, sb.SinkURL)

	k := &kubectl{t: t, bin: kubectlBin, kubeconfig: sb.Kubeconfig}
	url := "http://" + sb.IngressAddr() + path
	sim := sb.Resend
	client := &http.Client{Timeout: 10 * time.Second}
	step := func(name string, f func()) {
		start := time.Now()
		f()
		t.Logf("step %-28s %s", name, time.Since(start).Round(time.Millisecond))
		if t.Failed() {
			t.FailNow()
		}
	}

	step("1 apply and wait Ready", func() {
		manifest := fmt.Sprintf(manifestTemplate, namespace, name, apiKey, sinkSecret, name, host, path, sb.RedisURL, sb.SinkURL)
		f := filepath.Join(dir, "webhook.yaml")
		if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		k.run("apply", "-f", f)
		if _, err := k.try("wait", "--for=condition=Ready", "rwh/"+name, "-n", namespace, "--timeout=120s"); err != nil {
			t.Fatalf("ResendWebhook did not become Ready: %v\n%s", err, k.run("get", "rwh,deploy,pods,ingress", "-n", namespace, "-o", "wide"))
		}
		statusURL := k.run("get", "rwh", name, "-n", namespace, "-o", "jsonpath={.status.url}")
		if !strings.Contains(statusURL, host) {
			t.Errorf("status.url = %q, want it to name host %s", statusURL, host)
		}
		// The operator registered status.url with "Resend" and wrote the secret it issued.
		at := sim.Webhooks("")
		if len(at) != 1 || at[0].Endpoint != statusURL || at[0].Status != "enabled" {
			t.Fatalf("webhooks at Resend: %+v, want one for %s", at, statusURL)
		}
		if got := k.run("get", "rwh", name, "-n", namespace, "-o", "jsonpath={.status.resend.webhookID}"); got != at[0].ID {
			t.Errorf("status.resend.webhookID = %q, want %s", got, at[0].ID)
		}
		if got := secretValue(t, k, "signing-secret"); got != at[0].SigningSecret {
			t.Errorf("the signing Secret does not hold the secret Resend issued")
		}
	})

	step("2 kubectl get pods, kubectl logs", func() {
		// Kubernetes' own controllers made the pods; the node agent runs them and reports
		// Running and Ready as a kubelet does.
		table := k.run("get", "pods", "-n", namespace, "--no-headers")
		receivers, workers := 0, 0
		for line := range strings.Lines(table) {
			f := strings.Fields(line)
			if len(f) < 3 || f[1] != "1/1" || f[2] != "Running" {
				t.Errorf("pod not Running and Ready: %q", line)
				continue
			}
			switch {
			case strings.HasPrefix(f[0], name+"-receiver-"):
				receivers++
			case strings.HasPrefix(f[0], name+"-worker-"):
				workers++
			}
		}
		if receivers != 2 || workers != 1 {
			t.Errorf("kubectl get pods shows %d receivers and %d workers Running and Ready, want 2 and 1:\n%s", receivers, workers, table)
		}
		receiver := podsOf(t, k, "receiver")[0]
		if out := k.run("logs", "-n", namespace, receiver.Name); !strings.Contains(out, `"msg":"signing secrets loaded"`) {
			t.Errorf("kubectl logs %s lacks the receiver's start-up lines:\n%s", receiver.Name, out)
		}
	})

	var distinct []string
	step("3 1000+100 via Resend, 20 forged", func() {
		before := sim.Stats()
		for i := range 1000 {
			id, n, err := sim.Send("", sender.SampleEvent(resendapi.EventTypes[i%len(resendapi.EventTypes)], i, time.Now()))
			if err != nil || n != 1 {
				t.Fatalf("Resend did not send event %d: %v (%d webhooks)", i, err, n)
			}
			distinct = append(distinct, id)
		}
		eventually(t, 90*time.Second, func() error { return delivered(sim, before, 1000) })
		for _, id := range distinct[:100] { // Resend's replay: the same svix-id, freshly signed
			if err := sim.Replay(id); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 60*time.Second, func() error { return delivered(sim, before, 1100) })
		st := sim.Stats()
		if got := st.EndpointStatus[200] - before.EndpointStatus[200]; got != 1100 || st.Attempts-before.Attempts != 1100 {
			t.Errorf("Resend's attempts: %d, answered 200: %d; want 1100 each (no retry needed)", st.Attempts-before.Attempts, got)
		}
		// An attacker does not go through Resend: 20 forged events straight to the Ingress.
		s, err := sender.Send(ctx, sender.Options{URL: url, Host: host, Secret: signing.NewSecret(), WrongSecret: true, Count: 20, Concurrency: 4, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		wantCodes(t, "forged", s.Codes(sender.KindDistinct), map[int]int{401: 20})
		// The queue drains: nothing pending, active or retrying, and 1000 tasks completed.
		insp := asynq.NewInspector(mustRedisOpt(t, sb.RedisURL))
		defer func() { _ = insp.Close() }()
		eventually(t, 90*time.Second, func() error {
			q, err := insp.GetQueueInfo(namespace + "." + name)
			if err != nil {
				return err
			}
			if q.Pending+q.Active+q.Retry+q.Scheduled > 0 || q.Completed != 1000 {
				return fmt.Errorf("queue not drained: pending %d active %d retry %d scheduled %d completed %d archived %d",
					q.Pending, q.Active, q.Retry, q.Scheduled, q.Completed, q.Archived)
			}
			return nil
		})
		got := sb.Sink.Received()
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(slices.Values(distinct))) {
			t.Fatalf("sink received %d ids, want exactly the %d distinct ids sent", len(got), len(distinct))
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("sink received %s %d times, want once", id, n)
			}
		}
		if n := sb.Sink.Invalid(); n != 0 {
			t.Errorf("sink saw %d deliveries with an invalid signature", n)
		}
	})

	step("4 receiver pod deleted mid-traffic", func() {
		before, beforeSink := sim.Stats(), sb.Sink.Received()
		victim := podsOf(t, k, "receiver")[0]
		traffic := sim.Stream("", "email.opened", 10*time.Millisecond) // 100 events/s
		defer traffic.Stop()
		eventually(t, 10*time.Second, func() error { return atLeast(traffic.Sent(), 50) })
		// The receiver drains (503 while the endpoint goes, then in-flight requests finish);
		// the ReplicaSet controller starts a replacement.
		k.run("delete", "pod", "-n", namespace, victim.Name, "--wait=true", "--timeout=60s")
		eventually(t, 60*time.Second, func() error {
			pods := podsOf(t, k, "receiver")
			if len(pods) != 2 || slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.Name == victim.Name || !podReady(p) }) {
				return fmt.Errorf("receivers %v, want 2 ready without %s", podNames(pods), victim.Name)
			}
			return nil
		})
		after := traffic.Sent()
		eventually(t, 30*time.Second, func() error { return atLeast(traffic.Sent()-after, 100) })
		sent := int(traffic.Stop())
		// Nothing acknowledged is lost: every event "Resend" sent was answered 2xx in the end
		// (retries allowed) and reached the sink exactly once.
		eventually(t, 90*time.Second, func() error { return delivered(sim, before, sent) })
		if st := sim.Stats(); st.Dropped != before.Dropped {
			t.Errorf("Resend gave up on %d events", st.Dropped-before.Dropped)
		}
		eventually(t, 60*time.Second, func() error { return receivedOnce(sb.Sink, beforeSink, sent) })
		st := sim.Stats()
		t.Logf("pod %s deleted under traffic: %d events, %d attempts (answers %v), all delivered once",
			victim.Name, sent, st.Attempts-before.Attempts, st.EndpointStatus)
	})

	step("5 rotate with traffic flowing", func() {
		old := secretValue(t, k, "signing-secret")
		before, beforeSink := sim.Stats(), sb.Sink.Received()
		traffic := sim.Stream("", "email.delivered", 10*time.Millisecond) // 100 events/s for the whole rotation
		defer traffic.Stop()
		start := time.Now()
		k.run("annotate", "rwh", name, "-n", namespace, "webhooks.resend-operator.dev/rotate-signing-secret=e2e-1")
		eventually(t, 60*time.Second, func() error {
			if got := k.run("get", "rwh", name, "-n", namespace, "-o", "jsonpath={.status.resend.lastRotationRequest}"); got != "e2e-1" {
				return fmt.Errorf("lastRotationRequest %q", got)
			}
			return nil
		})
		fresh := sim.Webhooks("")[0].SigningSecret
		if fresh == old || secretValue(t, k, "signing-secret") != fresh || secretValue(t, k, "signing-secret.previous") != old {
			t.Errorf("after the rotation the Secret must hold Resend's new secret and the old one as previous")
		}
		// The receivers load the new secret (the kubelet's refresh, then their rescan) and keep
		// accepting the old one for the dual-signing window.
		eventually(t, 60*time.Second, func() error { return post(ctx, client, url, fresh, 200) })
		t.Logf("new secret accepted %s after kubectl annotate", time.Since(start).Round(time.Millisecond))
		if err := post(ctx, client, url, old, 200); err != nil {
			t.Errorf("old secret within the dual-signing window: %v", err)
		}
		after := traffic.Sent()
		eventually(t, 30*time.Second, func() error { // 200 more events after the swap
			if n := traffic.Sent() - after; n < 200 {
				return fmt.Errorf("%d events since the receivers took the new secret", n)
			}
			return nil
		})
		sent := traffic.Stop()
		eventually(t, 60*time.Second, func() error { return delivered(sim, before, int(sent)) })
		// Besides the stream, the two events posted straight to the Ingress with each secret.
		eventually(t, 60*time.Second, func() error { return receivedOnce(sb.Sink, beforeSink, int(sent)+2) })
		st := sim.Stats()
		if n := st.EndpointStatus[401] - before.EndpointStatus[401]; n != 0 {
			t.Errorf("%d deliveries got 401 during the rotation", n)
		}
		if n := st.Attempts - before.Attempts; int64(n) != sent || st.Signatures[2] == before.Signatures[2] {
			t.Errorf("%d attempts for %d events (want one each), %d dual-signed", n, sent, st.Signatures[2]-before.Signatures[2])
		}
		t.Logf("rotation under traffic: %d events, %d dual-signed, 0 rejected", sent, st.Signatures[2]-before.Signatures[2])
	})

	step("6 sink 500 → dead letters", func() {
		sb.Sink.SetStatus(http.StatusInternalServerError)
		before := deadColumn(t, k)
		stats := sim.Stats()
		var ids []string
		for i := range 5 {
			id, _, err := sim.Send("", sender.SampleEvent("email.bounced", 2000+i, time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		eventually(t, 30*time.Second, func() error { return delivered(sim, stats, 5) })
		eventually(t, 120*time.Second, func() error {
			if dead := deadColumn(t, k); dead < before+5 {
				return fmt.Errorf("kubectl get rwh shows Dead %d, want %d", dead, before+5)
			}
			return nil
		})
		attempts := sb.Sink.Attempts()
		for _, id := range ids {
			if attempts[id] != 3 {
				t.Errorf("event %s reached the sink %d times, want maxAttempts = 3", id, attempts[id])
			}
		}
		sb.Sink.SetStatus(http.StatusOK)
	})

	step("7 delete → garbage collection, processes stop, webhook removed at Resend", func() {
		pods := podsOf(t, k, "")
		if len(pods) != 3 {
			t.Fatalf("want 3 pods (2 receivers, 1 worker) before delete, got %v", podNames(pods))
		}
		k.run("delete", "rwh", name, "-n", namespace, "--wait=true", "--timeout=60s")
		// Kubernetes' garbage collector deletes the Deployments, their ReplicaSets and pods; the
		// node agent stops the processes and the pods go.
		eventually(t, 90*time.Second, func() error {
			if out := k.run("get", "deploy,rs,pods,svc,ingress,pdb", "-n", namespace, "-o", "name"); strings.TrimSpace(out) != "" {
				return fmt.Errorf("children left: %s", strings.Join(strings.Fields(out), " "))
			}
			return nil
		})
		for _, p := range pods {
			addr := net.JoinHostPort(nodeagent.LoopbackIP(netip.MustParseAddr(p.Status.PodIP)).String(), strconv.Itoa(render.AdminPort))
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				t.Errorf("pod %s's process still listens on %s", p.Name, addr)
			}
		}
		if at := sim.Webhooks(""); len(at) != 0 {
			t.Errorf("webhooks left at Resend after delete (deletionPolicy Delete): %+v", at)
		}
	})
	stop()
	t.Logf("end-to-end wall time: %s", time.Since(began).Round(time.Millisecond))
}

// apiKey is the simulator's key the webhook uses.
const apiKey = "re_e2e_0123456789abcdef0123456789"

const manifestTemplate = `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: v1
kind: Secret
metadata:
  name: %[2]s-resend
  namespace: %[1]s
stringData:
  api-key: %[3]s
---
apiVersion: v1
kind: Secret
metadata:
  name: %[2]s-sink
  namespace: %[1]s
stringData:
  secret: %[4]s
---
apiVersion: webhooks.resend-operator.dev/v1alpha1
kind: ResendWebhook
metadata:
  name: %[5]s
  namespace: %[1]s
spec:
  signingSecret:
    name: %[2]s-signing
  resend:
    apiKeySecretRef:
      name: %[2]s-resend
  queue:
    redis:
      url: %[8]s
    dedupWindow: 1h
  retry:
    maxAttempts: 3
    factor: 1
    minBackoff: 1s
    maxBackoff: 1s
    randomize: false
  maxDuration: 10s
  receiver:
    replicas: 2
  ingress:
    host: %[6]s
    path: %[7]s
  worker:
    replicas: 1
    concurrency: 20
    sink:
      url: %[9]s
      timeout: 5s
      signingSecretRef:
        name: %[2]s-sink
        key: secret
`

// podsOf lists the webhook's pods of a component ("" = all) that are not being deleted.
func podsOf(t *testing.T, k *kubectl, component string) []corev1.Pod {
	t.Helper()
	selector := render.LabelInstance + "=" + name
	if component != "" {
		selector += "," + render.LabelComponent + "=" + component
	}
	var list corev1.PodList
	if err := json.Unmarshal([]byte(k.run("get", "pods", "-n", namespace, "-l", selector, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

func podReady(p corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

func podNames(pods []corev1.Pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return names
}

func atLeast(n, want int64) error {
	if n < want {
		return fmt.Errorf("%d of %d", n, want)
	}
	return nil
}

// post sends one fresh signed event and checks the status code.
func post(ctx context.Context, c *http.Client, url, secret string, want int) error {
	body := sender.SampleEvent("email.delivered", 0, time.Now())
	got, err := sender.Post(ctx, c, url, host, secret, signing.NewMessageID(), body)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("got HTTP %d, want %d", got, want)
	}
	return nil
}

// delivered checks that the simulator delivered n more (event, webhook) pairs since before.
func delivered(sim *resendsim.Server, before resendsim.Stats, n int) error {
	st := sim.Stats()
	if got := st.Delivered - before.Delivered; got != n {
		return fmt.Errorf("delivered %d of %d (dropped %d, endpoint answers %v)", got, n, st.Dropped-before.Dropped, st.EndpointStatus)
	}
	return nil
}

// receivedOnce checks that the sink received n more events than in before, each exactly once.
func receivedOnce(sk *sink.Sink, before map[string]int, n int) error {
	fresh := 0
	for id, count := range sk.Received() {
		if before[id] > 0 {
			continue
		}
		if count != 1 {
			return fmt.Errorf("sink received %s %d times, want once", id, count)
		}
		fresh++
	}
	if fresh != n {
		return fmt.Errorf("sink received %d of %d new events", fresh, n)
	}
	return nil
}

// secretValue reads one key of the signing Secret the operator wrote.
func secretValue(t *testing.T, k *kubectl, key string) string {
	t.Helper()
	out := k.run("get", "secret", name+"-signing", "-n", namespace, "-o", "jsonpath={.data."+strings.ReplaceAll(key, ".", `\.`)+"}")
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("signing Secret key %s: %v", key, err)
	}
	return string(b)
}

// deadColumn reads the Dead printer column of `kubectl get rwh`.
func deadColumn(t *testing.T, k *kubectl) int {
	out := k.run("get", "rwh", name, "-n", namespace)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("unexpected kubectl get rwh output:\n%s", out)
	}
	header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	i := slices.Index(header, "DEAD")
	if i < 0 || len(row) != len(header) {
		t.Fatalf("kubectl get rwh has no DEAD column or empty cells:\n%s", out)
	}
	n, err := strconv.Atoi(row[i])
	if err != nil {
		t.Fatalf("DEAD column %q: %v", row[i], err)
	}
	return n
}

func wantCodes(t *testing.T, what string, got, want map[int]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s requests: status codes %v, want %v", what, got, want)
	}
}

func mustRedisOpt(t *testing.T, url string) asynq.RedisConnOpt {
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, "e2e", f)
}

type kubectl struct {
	t          *testing.T
	bin        string
	kubeconfig string
}

func (k *kubectl) try(args ...string) (string, error) {
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig=" + k.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (k *kubectl) run(args ...string) string {
	k.t.Helper()
	out, err := k.try(args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

func dumpTail(t *testing.T, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("--- last %d lines of %s ---\n%s", n, filepath.Base(path), strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
