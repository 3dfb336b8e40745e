package nodeagent_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/cluster"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/nodeagent"
)

const image = "podapp:test"

// manifest is what the test applies: a Deployment of podapp with a Secret volume, fieldRef
// env and HTTP probes, behind a Service, an Ingress and a PDB — the shapes the operator renders.
const manifest = `
apiVersion: v1
kind: Secret
metadata: {name: podapp-file}
stringData: {token: first}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podapp}
spec:
  replicas: 2
  selector: {matchLabels: {app: podapp}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: podapp}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: podapp:test
        args: [--listen=:8080, --file=/etc/podapp/token]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: VERSION, value: "1"}
        ports: [{name: http, containerPort: 8080}]
        # Generous timeouts: a loaded test machine must not fail a probe by accident.
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, timeoutSeconds: 5, failureThreshold: 1}
        livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1, timeoutSeconds: 5, failureThreshold: 2}
        volumeMounts: [{name: file, mountPath: /etc/podapp, readOnly: true}]
      volumes:
      - {name: file, secret: {secretName: podapp-file, defaultMode: 0440}}
---
apiVersion: v1
kind: Service
metadata: {name: podapp}
spec:
  selector: {app: podapp}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: podapp}
spec:
  rules:
  - host: podapp.test
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: podapp, port: {name: http}}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: podapp}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: podapp}}
`

// env is the running control plane, agent and kubectl of the test.
type env struct {
	t          *testing.T
	ctx        context.Context
	kubectl    string
	kubeconfig string
	agent      *nodeagent.Agent
	podOutput  *testutil.LogBuffer // every container's output, line-prefixed
}

func TestAgentRunsDeploymentsWithRealControllers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (control plane, controllers, node agent) skipped in -short mode")
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	kubectlBin := testutil.Kubectl(t)
	dir := t.TempDir()
	podapp := filepath.Join(dir, "podapp")
	build := exec.CommandContext(ctx, "go", "build", "-o", podapp, "./test/nodeagent/podapp")
	build.Dir = testutil.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building podapp: %v\n%s", err, out)
	}

	logs, podOutput := &testutil.LogBuffer{}, &testutil.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("NODEAGENT_DEBUG") != "" {
			t.Logf("agent log (tail):\n%s", logs.Tail(400))
			kcm, _ := os.ReadFile(filepath.Join(dir, "cluster", "kube-controller-manager.log"))
			t.Logf("kube-controller-manager log (tail):\n%s", tail(string(kcm), 30))
		}
	})
	c, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	tlsConfig, err := c.Kubelet.ServerTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := nodeagent.Start(ctx, nodeagent.Config{
		RestConfig:     c.RestConfig,
		KubeletTLS:     tlsConfig,
		Images:         map[string]string{image: podapp},
		RunDir:         filepath.Join(dir, "pods"),
		IngressAddr:    "127.0.0.1:0",
		MaxGracePeriod: 5 * time.Second,
		Log:            log,
		PodOutput:      podOutput,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop) // runs before c.Stop
	t.Logf("control plane, controllers and agent up in %s", time.Since(began).Round(time.Millisecond))
	e := &env{t: t, ctx: ctx, kubectl: kubectlBin, kubeconfig: c.Kubeconfig, agent: agent, podOutput: podOutput}

	testutil.Eventually(t, 30*time.Second, "node Ready in kubectl get nodes", func() error {
		return row(e.run("get", "nodes", "--no-headers"), agent.NodeName(), "Ready")
	})
	e.run("get", "lease", "-n", "kube-node-lease", agent.NodeName())
	// Only the API server (its kubelet client certificate) may read logs from the agent.
	if resp, err := insecureClient.Get("https://" + agent.KubeletAddr() + "/containerLogs/default/x/y"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("the kubelet endpoint answered a client without certificate: HTTP %d", resp.StatusCode)
	}

	step := time.Now()
	e.apply(manifest)
	e.run("wait", "--for=condition=Available", "deployment/podapp", "--timeout=120s")
	t.Logf("apply → Deployment Available (2 replicas, real controllers): %s", time.Since(step).Round(time.Millisecond))

	t.Run("pods run and are ready", func(t *testing.T) {
		e := e.on(t)
		pods := e.readyPods(2)
		table := e.run("get", "pods", "-l", "app=podapp", "--no-headers")
		for _, p := range pods {
			if err := row(table, p.Name, "1/1", "Running"); err != nil {
				t.Error(err)
			}
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil || !agent.PodCIDR().Contains(ip) {
				t.Errorf("pod %s IP %q is not in the node's podCIDR %s", p.Name, p.Status.PodIP, agent.PodCIDR())
			}
		}
		if pods[0].Status.PodIP == pods[1].Status.PodIP {
			t.Errorf("both pods have IP %s", pods[0].Status.PodIP)
		}
		// The real endpointslice controller points at the pods' own IPs.
		testutil.Eventually(t, 20*time.Second, "EndpointSlice lists both pod IPs as ready", func() error {
			return sameSet(e.readyEndpointIPs(), podIPs(pods))
		})
		testutil.Eventually(t, 20*time.Second, "PDB status from the disruption controller", func() error {
			var pdb policyv1.PodDisruptionBudget
			e.getJSON(&pdb, "pdb/podapp")
			if pdb.Status.CurrentHealthy != 2 || pdb.Status.DisruptionsAllowed != 1 {
				return fmt.Errorf("currentHealthy=%d disruptionsAllowed=%d", pdb.Status.CurrentHealthy, pdb.Status.DisruptionsAllowed)
			}
			return nil
		})
	})

	t.Run("ingress routes to every ready pod", func(t *testing.T) {
		e := e.on(t)
		var ing networkingv1.Ingress
		testutil.Eventually(t, 20*time.Second, "Ingress load-balancer status", func() error {
			e.getJSON(&ing, "ingress/podapp")
			if lb := ing.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != "127.0.0.1" || len(lb[0].Ports) != 1 {
				return fmt.Errorf("load balancer status %+v", lb)
			}
			return nil
		})
		if want := agent.IngressAddr(); fmt.Sprintf("127.0.0.1:%d", ing.Status.LoadBalancer.Ingress[0].Ports[0].Port) != want {
			t.Errorf("Ingress status port %d, proxy listens on %s", ing.Status.LoadBalancer.Ingress[0].Ports[0].Port, want)
		}
		pods := e.readyPods(2)
		testutil.Eventually(t, 20*time.Second, "both pods answer through the Ingress", func() error {
			return sameSet(e.answeringPods(8), podNames(pods))
		})
		if code, _ := e.ingressGet("other.test", "/"); code != http.StatusNotFound {
			t.Errorf("unknown host: HTTP %d, want 404", code)
		}
	})

	t.Run("ingress skips an unready pod", func(t *testing.T) {
		e := e.on(t)
		pods := e.readyPods(2)
		unready, other := pods[0], pods[1]
		e.podPost(unready, "/unready")
		testutil.Eventually(t, 20*time.Second, "pod Ready=False and out of the EndpointSlice", func() error {
			if err := row(e.run("get", "pod", unready.Name, "--no-headers"), unready.Name, "0/1", "Running"); err != nil {
				return err
			}
			return sameSet(e.readyEndpointIPs(), []string{other.Status.PodIP})
		})
		testutil.Eventually(t, 10*time.Second, "the proxy saw the endpoint go", func() error {
			return sameSet(e.answeringPods(6), []string{other.Name})
		})
		if got := e.answeringPods(20); !slices.Equal(got, []string{other.Name}) {
			t.Errorf("answering pods %v, want only the ready %s", got, other.Name)
		}
		e.podPost(unready, "/ready")
		e.readyPods(2)
	})

	t.Run("kubectl logs", func(t *testing.T) {
		e := e.on(t)
		pod := e.readyPods(2)[0]
		out := e.run("logs", pod.Name)
		for _, want := range []string{"podapp listening on " + loopback(pod) + ":8080 pod=" + pod.Name, "this line goes to stderr"} {
			if err := contains(out, want); err != nil {
				t.Error(err)
			}
		}
		if tail := strings.TrimSpace(e.run("logs", pod.Name, "--tail=1")); strings.Contains(tail, "\n") || tail == "" {
			t.Errorf("--tail=1 returned %q", tail)
		}
		if ts := e.run("logs", pod.Name, "--timestamps", "--tail=1"); !strings.HasPrefix(ts, time.Now().UTC().Format("2006-")) {
			t.Errorf("--timestamps returned %q", ts)
		}
		e.followLogs(pod)
		// The same lines, prefixed with pod and container, in the one stream of all output.
		if err := contains(e.podOutput.String(), "[default/"+pod.Name+"/app] podapp: this line goes to stderr"); err != nil {
			t.Error(err)
		}
	})

	t.Run("secret volume update is swapped in atomically", func(t *testing.T) {
		e := e.on(t)
		pod := e.readyPods(2)[0]
		want := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
		if got := e.podGet(pod, "/file"); strings.TrimSpace(got) != want("first") {
			t.Fatalf("file hash %q, want that of %q", got, "first")
		}
		e.run("patch", "secret", "podapp-file", "-p", `{"stringData":{"token":"second"}}`)
		testutil.Eventually(t, 20*time.Second, "the pod reads the new content", func() error {
			if got := strings.TrimSpace(e.podGet(pod, "/file")); got != want("second") {
				return fmt.Errorf("hash %s", got)
			}
			return nil
		})
	})

	t.Run("crash restarts the container; --previous shows the last run", func(t *testing.T) {
		e := e.on(t)
		pod := e.readyPods(2)[0]
		e.podPost(pod, "/crash")
		if last := e.restartedOnce(pod).LastTerminationState.Terminated; last == nil || last.ExitCode != 3 || last.Reason != "Error" {
			t.Errorf("last termination %+v, want exit code 3 (Error)", last)
		}
		if err := contains(e.run("logs", pod.Name, "--previous"), "crashing on request"); err != nil {
			t.Error(err)
		}
		events := e.run("get", "events", "--field-selector", "involvedObject.name="+pod.Name)
		for _, reason := range []string{"Scheduled", "Started", "BackOff"} {
			if err := contains(events, reason); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("a failing liveness probe restarts the container", func(t *testing.T) {
		e := e.on(t)
		pod := e.readyPods(2)[1]
		e.podPost(pod, "/unhealthy")
		e.restartedOnce(pod)
		if err := contains(e.run("get", "events", "--field-selector", "involvedObject.name="+pod.Name), "failed liveness probe, will be restarted"); err != nil {
			t.Error(err)
		}
	})

	t.Run("kubectl delete pod: SIGTERM, grace period, SIGKILL, then a replacement", func(t *testing.T) {
		e := e.on(t)
		victim := e.readyPods(2)[0]
		e.podPost(victim, "/ignore-sigterm")
		deleted := time.Now()
		e.run("delete", "pod", victim.Name, "--grace-period=2", "--wait=true", "--timeout=30s")
		// Only SIGKILL at the end of the grace period stops a process that ignores SIGTERM.
		if took := time.Since(deleted); took < 1500*time.Millisecond {
			t.Errorf("the pod was gone %s after the delete, before its 2 s grace period", took)
		}
		testutil.Eventually(t, 60*time.Second, "two ready pods again, the deleted one gone", func() error {
			pods, err := e.pods()
			if err != nil {
				return err
			}
			if slices.Contains(podNames(pods), victim.Name) || len(readyOnly(pods)) != 2 {
				return fmt.Errorf("pods %v (ready %v)", podNames(pods), podNames(readyOnly(pods)))
			}
			return nil
		})
		if _, err := http.Get("http://" + loopback(victim) + ":8080/"); err == nil {
			t.Errorf("the deleted pod's process still answers on %s", loopback(victim))
		}
	})

	t.Run("kubectl scale", func(t *testing.T) {
		e := e.on(t)
		e.run("scale", "deployment/podapp", "--replicas=3")
		e.run("rollout", "status", "deployment/podapp", "--timeout=60s")
		e.readyPods(3)
		e.run("scale", "deployment/podapp", "--replicas=2")
		testutil.Eventually(t, 60*time.Second, "back to two pods", func() error {
			pods, err := e.pods()
			if err == nil && len(pods) != 2 {
				err = fmt.Errorf("%d pods: %v", len(pods), podNames(pods))
			}
			return err
		})
	})

	t.Run("kubectl rollout status after a template change", func(t *testing.T) {
		e := e.on(t)
		e.run("set", "env", "deployment/podapp", "VERSION=2")
		e.run("rollout", "status", "deployment/podapp", "--timeout=90s")
		var d appsv1.Deployment
		e.getJSON(&d, "deployment/podapp")
		if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != 2 || d.Status.AvailableReplicas != 2 {
			t.Errorf("deployment status %+v (generation %d)", d.Status, d.Generation)
		}
		for _, p := range e.readyPods(2) {
			if err := contains(e.podGet(p, "/"), "version=2"); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("an image outside the map fails the pod clearly", func(t *testing.T) {
		e := e.on(t)
		e.run("create", "deployment", "other", "--image=nginx:1.27")
		e.onlyPodShows("app=other", "0/1", "ErrImagePull", nil)
		e.run("delete", "deployment", "other", "--wait=true")
	})

	t.Run("a pod waits for a missing Secret and starts once it exists", func(t *testing.T) {
		e := e.on(t)
		late := strings.NewReplacer("name: podapp-file", "name: late", "secretName: podapp-file", "secretName: late",
			"{name: podapp}", "{name: waiter}", "app: podapp", "app: waiter", "replicas: 2", "replicas: 1")
		deployment := manifest[strings.Index(manifest, "apiVersion: apps/v1"):strings.Index(manifest, "---\napiVersion: v1\nkind: Service")]
		e.apply(late.Replace(deployment))
		e.onlyPodShows("app=waiter", "0/1", "ContainerCreating", func() error {
			return contains(e.run("get", "events", "--field-selector", "reason=FailedMount"), `secret "late" not found`)
		})
		e.apply(late.Replace(manifest[:strings.Index(manifest, "---")]))
		e.onlyPodShows("app=waiter", "1/1", "Running", nil)
		e.run("delete", "deployment", "waiter", "--wait=true")
	})

	t.Run("deleting the Deployment garbage-collects its ReplicaSets and pods", func(t *testing.T) {
		e := e.on(t)
		pods := e.readyPods(2)
		e.run("delete", "deployment", "podapp")
		testutil.Eventually(t, 60*time.Second, "no ReplicaSet and no pod left", func() error {
			out := e.run("get", "replicasets,pods", "-l", "app=podapp", "-o", "name")
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("still there: %s", out)
			}
			return nil
		})
		for _, p := range pods {
			if _, err := http.Get("http://" + loopback(p) + ":8080/"); err == nil {
				t.Errorf("pod %s's process still answers", p.Name)
			}
		}
	})
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

var insecureClient = &http.Client{Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the point is to present no client certificate
}}

// on is e for a subtest.
func (e *env) on(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// run runs kubectl and returns its stdout; it fails the test on error.
func (e *env) run(args ...string) string {
	e.t.Helper()
	out, err := e.kubectlOutput("", args...)
	if err != nil {
		e.t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (e *env) kubectlOutput(stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(e.ctx, e.kubectl, append([]string{"--kubeconfig=" + e.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

func (e *env) apply(yaml string) {
	e.t.Helper()
	if _, err := e.kubectlOutput(yaml, "apply", "-f", "-"); err != nil {
		e.t.Fatalf("kubectl apply: %v", err)
	}
}

func (e *env) getJSON(into any, object string) {
	e.t.Helper()
	if err := json.Unmarshal([]byte(e.run("get", object, "-o", "json")), into); err != nil {
		e.t.Fatal(err)
	}
}

// pods lists podapp's pods that are not being deleted.
func (e *env) pods() ([]corev1.Pod, error) {
	out, err := e.kubectlOutput("", "get", "pods", "-l", "app=podapp", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil }), nil
}

// readyPods waits until exactly n pods exist, all Running and Ready, and returns them.
func (e *env) readyPods(n int) []corev1.Pod {
	e.t.Helper()
	var pods []corev1.Pod
	testutil.Eventually(e.t, 60*time.Second, fmt.Sprintf("%d running and ready pods", n), func() error {
		var err error
		if pods, err = e.pods(); err != nil {
			return err
		}
		if len(pods) != n || len(readyOnly(pods)) != n {
			return fmt.Errorf("pods %v, ready %v", podNames(pods), podNames(readyOnly(pods)))
		}
		return nil
	})
	return pods
}

// onlyPodShows waits until kubectl get pods shows the one pod of selector with these READY
// and STATUS columns (and also passes check, if any).
func (e *env) onlyPodShows(selector, ready, status string, check func() error) {
	e.t.Helper()
	testutil.Eventually(e.t, 30*time.Second, "pod of "+selector+" "+ready+" "+status, func() error {
		table := e.run("get", "pods", "-l", selector, "--no-headers")
		if err := row(table, strings.Fields(table + " -")[0], ready, status); err != nil || check == nil {
			return err
		}
		return check()
	})
}

// restartedOnce waits until the pod's container has restarted once and is Ready again, and
// returns its status.
func (e *env) restartedOnce(pod corev1.Pod) corev1.ContainerStatus {
	e.t.Helper()
	var p corev1.Pod
	testutil.Eventually(e.t, 30*time.Second, "restarted once and Ready again", func() error {
		e.getJSON(&p, "pod/"+pod.Name)
		if s := p.Status.ContainerStatuses; len(s) != 1 || s[0].RestartCount != 1 || !s[0].Ready {
			return fmt.Errorf("container statuses %+v", s)
		}
		return nil
	})
	return p.Status.ContainerStatuses[0]
}

// loopback is where the pod's processes listen (the pod IP's loopback twin).
func loopback(p corev1.Pod) string {
	return nodeagent.LoopbackIP(netip.MustParseAddr(p.Status.PodIP)).String()
}

func readyOnly(pods []corev1.Pod) []corev1.Pod {
	return slices.DeleteFunc(slices.Clone(pods), func(p corev1.Pod) bool {
		if p.Status.Phase != corev1.PodRunning {
			return true
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status != corev1.ConditionTrue
			}
		}
		return true
	})
}

func podNames(pods []corev1.Pod) []string {
	return podField(pods, func(p corev1.Pod) string { return p.Name })
}

func podIPs(pods []corev1.Pod) []string {
	return podField(pods, func(p corev1.Pod) string { return p.Status.PodIP })
}

func podField(pods []corev1.Pod, field func(corev1.Pod) string) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = field(p)
	}
	return out
}

// readyEndpointIPs are the ready addresses of podapp's EndpointSlices.
func (e *env) readyEndpointIPs() []string {
	var list discoveryv1.EndpointSliceList
	e.getJSON(&list, "endpointslices")
	var ips []string
	for _, s := range list.Items {
		if s.Labels[discoveryv1.LabelServiceName] != "podapp" {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				ips = append(ips, ep.Addresses...)
			}
		}
	}
	return ips
}

func (e *env) ingressGet(host, path string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, "http://"+e.agent.IngressAddr()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// answeringPods sends n requests through the Ingress and returns the distinct pods that
// answered, sorted.
func (e *env) answeringPods(n int) []string {
	e.t.Helper()
	seen := map[string]bool{}
	for range n {
		code, body := e.ingressGet("podapp.test", "/")
		if code != http.StatusOK {
			e.t.Fatalf("through the Ingress: HTTP %d: %s", code, body)
		}
		pod, _, _ := strings.Cut(strings.TrimPrefix(body, "pod="), " ")
		seen[pod] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func (e *env) podGet(p corev1.Pod, path string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + loopback(p) + ":8080" + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// podPost posts to a pod directly; a crashing pod may not answer.
func (e *env) podPost(p corev1.Pod, path string) {
	resp, err := http.Post("http://"+loopback(p)+":8080"+path, "text/plain", nil)
	if err == nil {
		_ = resp.Body.Close()
	}
}

// followLogs checks kubectl logs -f: lines the pod logs after the stream started arrive.
func (e *env) followLogs(pod corev1.Pod) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	out := &testutil.LogBuffer{}
	cmd := exec.CommandContext(ctx, e.kubectl, "--kubeconfig="+e.kubeconfig, "logs", "-f", "--tail=0", pod.Name)
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	testutil.Eventually(e.t, 15*time.Second, "kubectl logs -f shows a line logged after it started", func() error {
		e.podGet(pod, "/") // the pod logs every request
		return contains(out.String(), "served / to")
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func contains(s, sub string) error {
	if strings.Contains(s, sub) {
		return nil
	}
	return fmt.Errorf("%q not in:\n%s", sub, s)
}

func sameSet(got, want []string) error {
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

// row checks that a kubectl table (without headers) has a row starting with these columns.
func row(table string, columns ...string) error {
	for line := range strings.Lines(table) {
		if f := strings.Fields(line); len(f) >= len(columns) && slices.Equal(f[:len(columns)], columns) {
			return nil
		}
	}
	return fmt.Errorf("no row %v in:\n%s", columns, table)
}
