package podrunner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The test binary doubles as the container image: with FAKE_CONTAINER=1 in its environment
// (set through the pod template's env) it serves --listen (GET / answers "<pod> <GREETING>",
// GET /file answers the content of --file) and --admin-listen (/readyz, /healthz), and exits
// on SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_CONTAINER") == "1" {
		fakeContainer()
		return
	}
	os.Exit(m.Run())
}

func fakeContainer() {
	fs := flag.NewFlagSet("fake", flag.ExitOnError)
	listen := fs.String("listen", "", "")
	admin := fs.String("admin-listen", "", "")
	file := fs.String("file", "", "")
	_ = fs.Parse(os.Args[2:]) // os.Args[1] is the subcommand, as the operator's pods have
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s %s", os.Getenv("HOSTNAME"), os.Getenv("GREETING"))
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, _ *http.Request) {
		b, err := os.ReadFile(*file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(b)
	})
	adm := http.NewServeMux()
	adm.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	for addr, h := range map[string]http.Handler{*listen: mux, *admin: adm} {
		go func() { _ = http.ListenAndServe(addr, h) }()
	}
	fmt.Println("fake container up", *listen, *admin)
	<-ctx.Done()
}

const image = "operator:test"

func startRunner(t *testing.T) (*Runner, client.Client) {
	t.Helper()
	testutil.KubeAssets(t)
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := &testutil.LogBuffer{}
	r, err := Start(context.Background(), Config{
		RestConfig: cfg, Binary: self, Images: []string{image}, RunDir: t.TempDir(),
		IngressAddr: "127.0.0.1:0", Log: slog.New(slog.NewJSONHandler(out, nil)), GCInterval: time.Second,
		MaxGracePeriod: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("runner log:\n%s", out.Tail(40))
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func TestRunnerDeploymentIngressSecretsRollGC(t *testing.T) {
	r, c := startRunner(t)
	ctx := context.Background()
	ns := "default"
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "files"}, StringData: map[string]string{"greeting.txt": "v1"}}
	for _, o := range []client.Object{owner, secret} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "fake"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fake", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID},
		}},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: new(intstr.FromInt32(0)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "main", Image: image,
						Args: []string{"serve", "--listen=:8080", "--admin-listen=:9090", "--file=/etc/fake/greeting.txt"},
						Env:  []corev1.EnvVar{{Name: "FAKE_CONTAINER", Value: "1"}, {Name: "GREETING", Value: "hello"}},
						Ports: []corev1.ContainerPort{
							{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("admin")}}},
						VolumeMounts:   []corev1.VolumeMount{{Name: "files", MountPath: "/etc/fake", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "files", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "files"}}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fake"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fake"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "fake.local", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: new(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "fake", Port: networkingv1.ServiceBackendPort{Name: "web"}}}}},
		}}}}},
	}
	for _, o := range []client.Object{dep, svc, ing} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	get := func(host, path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.IngressAddr()+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("status and ingress", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			var d appsv1.Deployment
			if err := c.Get(ctx, client.ObjectKeyFromObject(dep), &d); err != nil {
				return err
			}
			if d.Status.ReadyReplicas != 2 || d.Status.AvailableReplicas != 2 || d.Status.UpdatedReplicas != 2 || d.Status.ObservedGeneration != d.Generation {
				return fmt.Errorf("status %+v", d.Status)
			}
			if !deploymentAvailable(&d) {
				return errors.New("Available condition not True")
			}
			return nil
		})
		eventually(t, 10*time.Second, func() error {
			var got networkingv1.Ingress
			if err := c.Get(ctx, client.ObjectKeyFromObject(ing), &got); err != nil {
				return err
			}
			if lb := got.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != "127.0.0.1" {
				return fmt.Errorf("ingress status %+v", got.Status)
			}
			return nil
		})
		seen := map[string]bool{}
		for range 10 {
			code, body := get("fake.local", "/")
			if code != http.StatusOK || !strings.HasSuffix(body, " hello") {
				t.Fatalf("GET via ingress: %d %q", code, body)
			}
			seen[strings.Fields(body)[0]] = true
		}
		if len(seen) != 2 {
			t.Errorf("round-robin over 2 ready pods reached %v", seen)
		}
		if code, _ := get("other.local", "/"); code != http.StatusNotFound {
			t.Errorf("a host no rule names: %d, want 404", code)
		}
	})

	t.Run("secret update reaches the files", func(t *testing.T) {
		if code, body := get("fake.local", "/file"); code != 200 || body != "v1" {
			t.Fatalf("file before update: %d %q", code, body)
		}
		secret.StringData = map[string]string{"greeting.txt": "v2"}
		if err := c.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			for range 4 { // both pods
				if code, body := get("fake.local", "/file"); code != 200 || body != "v2" {
					return fmt.Errorf("file: %d %q", code, body)
				}
			}
			return nil
		})
	})

	t.Run("crashed process restarts", func(t *testing.T) {
		before := podsOf(r, "fake")
		victim := before[0]
		if len(victim.PIDs) != 1 {
			t.Fatalf("pod %s has pids %v", victim.Name, victim.PIDs)
		}
		if err := syscall.Kill(victim.PIDs[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, func() error {
			for _, p := range podsOf(r, "fake") {
				if p.Name == victim.Name && p.Restarts >= 1 && p.Ready && len(p.PIDs) == 1 && p.PIDs[0] != victim.PIDs[0] {
					return nil
				}
			}
			return fmt.Errorf("pod %s not restarted: %+v", victim.Name, podsOf(r, "fake"))
		})
	})

	t.Run("template change rolls", func(t *testing.T) {
		old := podsOf(r, "fake")
		var d appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKeyFromObject(dep), &d); err != nil {
			t.Fatal(err)
		}
		// maxUnavailable 0: while rolling, 2 ready pods always serve.
		var minReady atomic.Int32
		minReady.Store(2)
		sampling, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				ready := int32(0)
				for _, p := range podsOf(r, "fake") {
					if p.Ready && !p.Terminating {
						ready++
					}
				}
				if ready < minReady.Load() {
					minReady.Store(ready)
				}
				select {
				case <-sampling:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		orig := d.DeepCopy()
		d.Spec.Template.Spec.Containers[0].Env[1].Value = "bonjour"
		if err := c.Patch(ctx, &d, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		defer func() {
			close(sampling)
			<-done
			if m := minReady.Load(); m < 2 {
				t.Errorf("ready pods dropped to %d during the roll (maxUnavailable 0)", m)
			}
		}()
		eventually(t, 30*time.Second, func() error {
			pods := podsOf(r, "fake")
			if len(pods) != 2 {
				return fmt.Errorf("%d pods", len(pods))
			}
			for _, p := range pods {
				for _, o := range old {
					if p.Name == o.Name {
						return fmt.Errorf("old pod %s still there", p.Name)
					}
				}
			}
			for range 4 {
				if code, body := get("fake.local", "/"); code != 200 || !strings.HasSuffix(body, " bonjour") {
					return fmt.Errorf("GET: %d %q", code, body)
				}
			}
			return nil
		})
	})

	t.Run("custom image is reported, not run", func(t *testing.T) {
		custom := dep.DeepCopy()
		custom.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "custom"}
		custom.Spec.Template.Spec.Containers[0].Image = "example.com/their-worker:1"
		if err := c.Create(ctx, custom); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			var d appsv1.Deployment
			if err := c.Get(ctx, client.ObjectKeyFromObject(custom), &d); err != nil {
				return err
			}
			for _, cond := range d.Status.Conditions {
				if cond.Type == appsv1.DeploymentProgressing && cond.Reason == "ImageNotRunnable" && cond.Status == corev1.ConditionFalse {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", d.Status.Conditions)
		})
		if pods := podsOf(r, "custom"); len(pods) != 0 {
			t.Errorf("custom image must not run: %+v", pods)
		}
	})

	t.Run("owner deleted → children deleted → processes stop", func(t *testing.T) {
		var pids []int
		for _, p := range podsOf(r, "fake") {
			pids = append(pids, p.PIDs...)
		}
		if err := c.Delete(ctx, owner); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			err := c.Get(ctx, client.ObjectKeyFromObject(dep), &appsv1.Deployment{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("deployment still there (%v)", err)
			}
			if pods := podsOf(r, "fake"); len(pods) != 0 {
				return fmt.Errorf("pods left: %+v", pods)
			}
			for _, pid := range pids {
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("process %d still exists", pid)
				}
			}
			return nil
		})
		// The un-owned Deployment stays.
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "custom"}, &appsv1.Deployment{}); err != nil {
			t.Errorf("a Deployment without owners must be left alone: %v", err)
		}
	})
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podsOf(r *Runner, deployment string) []PodInfo {
	var out []PodInfo
	for _, p := range r.Pods() {
		if p.Deployment == deployment {
			out = append(out, p)
		}
	}
	return out
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, "pod runner", f)
}
