// Package cluster starts a local Kubernetes control plane for tests and the sandbox: a real
// kube-apiserver and etcd (through controller-runtime's envtest), Kubernetes' own
// kube-controller-manager and kube-scheduler, all built by hack/envtest-assets.sh. It has no
// node: a node agent (package test/nodeagent) registers one and runs the pods bound to it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Controllers is the kube-controller-manager set that makes Deployments, ReplicaSets, Pods,
// garbage collection, EndpointSlices, PDBs and HPAs behave as on a cluster:
//   - deployment, replicaset: rollouts, scaling, Deployment status;
//   - garbage-collector: ownerReferences (deleting a Deployment deletes its ReplicaSets and Pods);
//   - endpointslice: Service endpoints from ready pods (the Ingress proxy routes through them);
//   - disruption: PDB status; horizontal-pod-autoscaler: min/max bounds (no metrics server);
//   - node-lifecycle: removes the not-ready taint the API server puts on a new Node, and marks
//     the node NotReady when its agent stops renewing the Lease;
//   - namespace: deleting a Namespace deletes its content; serviceaccount: "default" accounts.
//
// Everything else (jobs, volumes, certificates, tokens, IPAM…) the operator never uses.
var Controllers = []string{
	"deployment-controller", "replicaset-controller", "garbage-collector-controller",
	"endpointslice-controller", "disruption-controller", "horizontal-pod-autoscaler-controller",
	"node-lifecycle-controller", "namespace-controller", "serviceaccount-controller",
}

// Options configure a control plane.
type Options struct {
	// Dir receives the kubeconfig, the kubelet PKI and the controllers' logs; required.
	Dir string
	// CRDDirs are installed before Start returns (e.g. config/crd/bases).
	CRDDirs []string
	// Log receives progress lines; nil discards them.
	Log *slog.Logger
}

// Cluster is a running control plane. Stop ends all of it.
type Cluster struct {
	// RestConfig and Kubeconfig (a file path) authenticate as a cluster admin.
	RestConfig *rest.Config
	Kubeconfig string
	// Kubelet is the PKI a node agent serves its kubelet endpoint with: the API server
	// verifies the agent's certificate and presents a client certificate the agent verifies.
	Kubelet *KubeletPKI

	env   *envtest.Environment
	procs []*process
	log   *slog.Logger
}

// Start starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler and returns
// once the controllers are working. On error, whatever started is stopped.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Dir == "" {
		return nil, errors.New("cluster: Dir is required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	assets, err := testutil.KubeAssetsDir()
	if err != nil {
		return nil, err
	}
	for _, bin := range []string{"kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("cluster: %s missing in %s: run 'make envtest'", bin, assets)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{log: o.Log}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if c.Kubelet, err = newKubeletPKI(filepath.Join(o.Dir, "pki")); err != nil {
		return nil, fmt.Errorf("cluster: kubelet PKI: %w", err)
	}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     o.CRDDirs,
		ErrorIfCRDPathMissing: len(o.CRDDirs) > 0,
	}
	// kubectl logs goes API server → node's kubelet endpoint (the agent) over verified TLS.
	args := c.env.ControlPlane.GetAPIServer().Configure()
	args.Set("kubelet-certificate-authority", c.Kubelet.CAFile)
	args.Set("kubelet-client-certificate", c.Kubelet.ClientCertFile)
	args.Set("kubelet-client-key", c.Kubelet.ClientKeyFile)
	args.Set("kubelet-preferred-address-types", string(corev1.NodeInternalIP))
	start := time.Now()
	if _, err := c.env.Start(); err != nil {
		c.env = nil
		return nil, fmt.Errorf("cluster: starting kube-apiserver and etcd: %w", err)
	}
	user, err := c.env.AddUser(envtest.User{Name: "cluster-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	c.RestConfig = user.Config()
	c.RestConfig.QPS, c.RestConfig.Burst = 200, 400
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	o.Log.Info("kube-apiserver and etcd started", "apiserver", c.RestConfig.Host, "took", since(start))

	// No serving ports (nothing scrapes them) and no leader election (one instance each).
	common := []string{"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0"}
	kcm := append(slices.Clone(common), "--controllers="+strings.Join(Controllers, ","),
		// React within a second: the sandbox has one node and wants fast convergence.
		"--node-monitor-period=1s", "--horizontal-pod-autoscaler-sync-period=5s")
	for _, p := range []struct {
		bin  string
		args []string
	}{{"kube-controller-manager", kcm}, {"kube-scheduler", common}} {
		proc, err := startProcess(filepath.Join(assets, p.bin), p.args, filepath.Join(o.Dir, p.bin+".log"))
		if err != nil {
			return nil, err
		}
		c.procs = append(c.procs, proc)
	}
	// The serviceaccount controller creating "default" shows the controller manager is running.
	cl, err := client.New(c.RestConfig, client.Options{})
	if err != nil {
		return nil, err
	}
	if err := c.waitFor(ctx, time.Minute, func() error {
		return cl.Get(ctx, types.NamespacedName{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
	}); err != nil {
		return nil, fmt.Errorf("cluster: kube-controller-manager not working: %w", err)
	}
	o.Log.Info("kube-controller-manager and kube-scheduler started", "controllers", Controllers, "logs", o.Dir, "took", since(start))
	return c, nil
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// waitFor polls check until it succeeds, a component exits, or timeout passes.
func (c *Cluster) waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		for _, p := range c.procs {
			if exited, why := p.exited(); exited {
				return why
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Stop stops the controllers, then the API server and etcd.
func (c *Cluster) Stop() {
	for _, p := range c.procs {
		p.stop()
	}
	c.procs = nil
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			c.log.Warn("stopping kube-apiserver and etcd", "error", err)
		}
		c.env = nil
	}
}

// process is a control-plane binary running as a child.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(bin string, args []string, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = testutil.ChildProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("cluster: starting %s: %w", bin, err)
	}
	p := &process{name: filepath.Base(bin), cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	return p, nil
}

// exited reports whether the process ended, with the last lines of its log.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		b, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return true, fmt.Errorf("%s exited (%v): %s", p.name, p.cmd.ProcessState, strings.Join(lines[max(0, len(lines)-5):], "\n"))
	default:
		return false, nil
	}
}

// stop sends SIGTERM and, after 10 s, SIGKILL.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
