// Command sandbox (bin/sandbox) is `make dev`: a local control plane with Kubernetes' own
// controllers, a node agent that runs the operator's pods and serves the Ingress, Redis, a
// Resend simulator, the operator's manager and an echo sink (package sandbox) — then it applies
// the sample ResendWebhook (which the operator registers with the simulator), waits until it is
// Ready and prints how to make "Resend" send events. Ctrl-C stops everything.
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/sandbox"
)

const (
	sampleRedisURL = "redis://127.0.0.1:6379/0"
	sampleSinkURL  = "http://127.0.0.1:8090/events"
)

func main() {
	cli.Main(func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout) })
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	root := testutil.RepoRoot()
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join(root, ".dev"), "run directory (kubeconfig, logs, pod files); recreated on start")
	binary := fs.String("binary", filepath.Join(root, "bin", "resend-webhook-operator"), "operator binary the node agent runs for the image "+sandbox.Image)
	sample := fs.String("sample", filepath.Join(root, "test", "sandbox", "sample.yaml"), "manifest applied at start (empty = none)")
	redisPort := fs.Int("redis-port", 6379, "Redis port (a free one when taken)")
	ingressAddr := fs.String("ingress-addr", "127.0.0.1:8080", "where Ingresses are served (a free port when taken)")
	sinkAddr := fs.String("sink-addr", "127.0.0.1:8090", "echo sink address (a free port when taken)")
	resendAddr := fs.String("resend-addr", "127.0.0.1:8070", "Resend simulator address (a free port when taken)")
	timeScale := fs.Float64("resend-time-scale", 0.01, "compresses Resend's retry schedule, dual-signing window and disabling (0.01: 5 min → 3 s)")
	podLogs := fs.Bool("pod-logs", false, "also print every pod's output (always in <dir>/pods.log)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*binary); err != nil {
		return fmt.Errorf("%s is missing: run 'make build' (make dev does) — %w", *binary, err)
	}
	// A fresh directory each run: old pod directories and a stale kubeconfig only confuse.
	for _, sub := range []string{"pods", "redis", "pki", "kubeconfig", "sample.yaml"} {
		_ = os.RemoveAll(filepath.Join(*dir, sub))
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(*dir, "sandbox.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	podFile, err := os.Create(filepath.Join(*dir, "pods.log"))
	if err != nil {
		return err
	}
	defer func() { _ = podFile.Close() }()
	var podOut io.Writer = podFile
	if *podLogs {
		podOut = io.MultiWriter(podFile, stdout)
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, "==> "+format+"\n", a...) }

	smp, err := readSample(*sample)
	if err != nil {
		return err
	}
	manifest := smp.manifest
	say("starting kube-apiserver + etcd, kube-controller-manager, kube-scheduler, the node agent, redis-server, the Resend simulator, the manager and the echo sink (logs: %s)", logFile.Name())
	started := time.Now()
	sb, err := sandbox.Start(ctx, sandbox.Options{
		Dir:             *dir,
		Binary:          *binary,
		RedisPort:       portOrFree(*redisPort, stdout),
		IngressAddr:     addrOrFree(*ingressAddr, stdout),
		SinkAddr:        addrOrFree(*sinkAddr, stdout),
		SinkSecret:      smp.sinkSecret,
		StatusRefresh:   5 * time.Second,
		ResendAddr:      addrOrFree(*resendAddr, stdout),
		ResendAPIKeys:   smp.apiKeys,
		ResendTimeScale: *timeScale,
		Log:             slog.New(slog.NewJSONHandler(logFile, nil)),
		SinkLog:         slog.New(slog.NewTextHandler(stdout, nil)),
		PodOutput:       podOut,
	})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping everything")
		sb.Stop()
		say("stopped")
	}()
	say("sandbox up in %s", time.Since(started).Round(100*time.Millisecond))

	kubectl := filepath.Join(mustAssets(), "kubectl")
	if manifest != nil {
		applied, err := writeSample(*dir, *sample, manifest, sb)
		if err != nil {
			return err
		}
		say("applying %s", applied)
		if out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig="+sb.Kubeconfig, "apply", "-f", applied).CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl apply: %w\n%s", err, out)
		}
		say("waiting until the sample ResendWebhook is Ready (receivers, worker, ingress, redis)")
		if out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig="+sb.Kubeconfig, "wait", "--for=condition=Ready", "resendwebhooks", "--all", "-A", "--timeout=180s").CombinedOutput(); err != nil {
			return fmt.Errorf("the sample did not become Ready: %w\n%s\nsee %s and %s", err, out, logFile.Name(), podFile.Name())
		}
		if err := printUsage(ctx, stdout, sb, applied, root); err != nil {
			return err
		}
	}
	say("running; Ctrl-C stops everything. Delivered events appear below.")
	<-ctx.Done()
	return nil
}

// sampleManifest is the sample and what the sandbox needs to know of it.
type sampleManifest struct {
	manifest   []byte
	sinkSecret string   // the secret its ResendWebhook signs deliveries with
	apiKeys    []string // the Resend API keys it references (the simulator accepts them)
}

// readSample reads the manifest, the sink secret and the Resend API keys of its ResendWebhooks.
func readSample(path string) (sampleManifest, error) {
	if path == "" {
		return sampleManifest{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return sampleManifest{}, err
	}
	secrets := map[string]map[string]string{}
	var refs []render.SecretRef
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var doc struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			StringData map[string]string          `json:"stringData"`
			Spec       v1alpha1.ResendWebhookSpec `json:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return sampleManifest{}, fmt.Errorf("%s: %w", path, err)
		}
		switch doc.Kind {
		case "Secret":
			secrets[doc.Metadata.Name] = doc.StringData
		case "ResendWebhook":
			refs = append(refs, render.SecretRefs(&v1alpha1.ResendWebhook{Spec: doc.Spec})...)
		}
	}
	out := sampleManifest{manifest: b}
	for _, ref := range refs {
		v := secrets[ref.Name][ref.Keys[0]]
		switch {
		case ref.Role == render.SecretSink:
			out.sinkSecret = v
		case ref.Role == render.SecretResendAPIKey && v != "":
			out.apiKeys = append(out.apiKeys, v)
		}
	}
	return out, nil
}

// writeSample points the sample at the sandbox's actual Redis and sink when their default ports
// were taken, writing the adjusted copy into the run directory.
func writeSample(dir, path string, manifest []byte, sb *sandbox.Sandbox) (string, error) {
	adjusted := strings.ReplaceAll(string(manifest), sampleRedisURL, sb.RedisURL)
	adjusted = strings.ReplaceAll(adjusted, sampleSinkURL, sb.SinkURL)
	if adjusted == string(manifest) {
		return path, nil
	}
	out := filepath.Join(dir, "sample.yaml")
	return out, os.WriteFile(out, []byte(adjusted), 0o644)
}

func printUsage(ctx context.Context, w io.Writer, sb *sandbox.Sandbox, sample, root string) error {
	c, err := client.New(sb.RestConfig, client.Options{})
	if err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(c.Scheme()); err != nil {
		return err
	}
	var list v1alpha1.ResendWebhookList
	if err := c.List(ctx, &list); err != nil {
		return err
	}
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	assetsRel := "$(hack/envtest-assets.sh --print-dir)/kubectl"
	fmt.Fprintf(w, "\n")
	for _, rw := range list.Items {
		secret := ""
		var s corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: rw.Namespace, Name: rw.Spec.SigningSecret.Name}, &s); err == nil {
			for _, k := range rw.SigningSecretKeys() {
				if v, ok := s.Data[k]; ok {
					secret = string(v)
					break
				}
			}
		}
		path := "/"
		host := ""
		if in := rw.Spec.Ingress; in != nil {
			path, host = cmp.Or(in.Path, "/"), in.Host
		}
		url := "http://" + sb.IngressAddr() + path
		hostFlag := ""
		if host != "" {
			hostFlag = " --host=" + host
		}
		fmt.Fprintf(w, "ResendWebhook %s/%s is Ready (sample: %s)\n", rw.Namespace, rw.Name, rel(sample))
		fmt.Fprintf(w, "  public URL      %s", url)
		if host != "" {
			fmt.Fprintf(w, "  (Host: %s)", host)
		}
		fmt.Fprintf(w, "\n  status.url      %s  (what a real Ingress would serve)\n", rw.Status.URL)
		direct := fmt.Sprintf("%s send --url=%s%s --secret=%s", rel(filepath.Join(root, "bin", "resend-webhook-operator")), url, hostFlag, secret)
		if st := rw.Status.Resend; rw.Spec.Resend != nil && st != nil {
			fmt.Fprintf(w, "  at Resend       webhook %s, %s, %d event types (simulator %s)\n", st.WebhookID, st.State, len(st.Events), sb.ResendURL)
			fmt.Fprintf(w, "  signing secret  %s  (issued by Resend, written by the operator)\n", secret)
			fmt.Fprintf(w, "  send events     curl -X POST '%s/_sim/events?count=5'\n", sb.ResendURL)
			fmt.Fprintf(w, "                  (\"Resend\" signs and delivers them; ?type=email.bounced,email.opened picks types; GET %s/_sim/stats counts)\n", sb.ResendURL)
			fmt.Fprintf(w, "  rotate secret   kubectl annotate rwh %s %s=$(date +%%s) --overwrite\n", rw.Name, v1alpha1.AnnotationRotateSigningSecret)
			fmt.Fprintf(w, "  or directly     %s\n", direct)
			continue
		}
		fmt.Fprintf(w, "  signing secret  %s\n", secret)
		fmt.Fprintf(w, "  send events     %s\n", direct)
		fmt.Fprintf(w, "                  (add --count=100 --duplicates=10 --forged=5, or --file=event.json)\n")
	}
	fmt.Fprintf(w, "  kubectl         export KUBECONFIG=%s; K=%s\n", rel(sb.Kubeconfig), assetsRel)
	fmt.Fprintf(w, "                  $K get rwh,deploy,pods; $K logs deploy/%s-receiver; $K delete pod …; $K scale …\n", firstName(list.Items))
	fmt.Fprintf(w, "  redis           %s\n", sb.RedisURL)
	fmt.Fprintf(w, "  echo sink       %s (its log lines follow)\n", sb.SinkURL)
	fmt.Fprintf(w, "  pod logs        $K logs <pod>, or every pod's output in %s\n\n", rel(filepath.Join(filepath.Dir(sb.Kubeconfig), "pods.log")))
	return nil
}

// firstName is the name of the first webhook, for the example commands.
func firstName(items []v1alpha1.ResendWebhook) string {
	if len(items) == 0 {
		return "<webhook>"
	}
	return items[0].Name
}

func mustAssets() string {
	dir, err := testutil.KubeAssetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
	return dir
}

// portOrFree returns port when it can be bound on 127.0.0.1, else 0 (a free port).
func portOrFree(port int, w io.Writer) int {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if addrOrFree(addr, w) == addr {
		return port
	}
	return 0
}

// addrOrFree returns addr when it can be bound, else 127.0.0.1:0 (a free port).
func addrOrFree(addr string, w io.Writer) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(w, "==> %s is taken; using a free port instead\n", addr)
		return "127.0.0.1:0"
	}
	_ = ln.Close()
	return addr
}
