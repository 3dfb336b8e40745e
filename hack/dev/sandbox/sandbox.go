// Package sandbox assembles the local environment that `make dev` and the end-to-end test run:
// a real kube-apiserver + etcd (envtest binaries) with the CRD installed, a private
// redis-server, a Resend simulator the manager registers webhooks with, the operator's manager
// (in-process), the local pod runner with its Ingress proxy, and an echo sink. Everything
// listens on 127.0.0.1 and Stop ends all of it.
package sandbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/hack/podrunner"
	"github.com/resend-webhook-operator/resend-webhook-operator/hack/sink"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendsim"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// Image is the pod image the sandbox's manager renders and the runner runs as the local binary.
const Image = "resend-webhook-operator:dev"

// Options configure a sandbox. Zero values pick free loopback ports and a temp directory.
type Options struct {
	Dir         string // run directory (kubeconfig, redis, pod dirs and logs); required
	Binary      string // the operator binary the runner runs for pods; required
	RedisPort   int    // 0 = a free port
	IngressAddr string // default 127.0.0.1:0
	SinkAddr    string // default 127.0.0.1:0
	SinkSecret  string // whsec_ secret the worker signs deliveries with; empty = not verified
	// StatusRefresh is how often the controller re-reads queue figures (default 30s).
	StatusRefresh time.Duration
	Log           *slog.Logger // sandbox, runner, manager and sink logs
	SinkLog       *slog.Logger // default Log
	PodOutput     io.Writer    // every pod's output, line-prefixed; nil = only the log files

	// ResendAddr is where the Resend simulator listens (default 127.0.0.1:0).
	ResendAddr string
	// ResendAPIKeys are the API keys the simulator accepts (one account).
	ResendAPIKeys []string
	// ResendTimeScale compresses Resend's delivery schedule, dual-signing window and disabling
	// (default 0.01: 5 s → 50 ms, 5 min → 3 s, 24 h → 14.4 min).
	ResendTimeScale float64
	// ResendSyncInterval is the manager's --resend-sync-interval (default 30s).
	ResendSyncInterval time.Duration
}

// Sandbox is a running sandbox.
type Sandbox struct {
	RestConfig *rest.Config
	Kubeconfig string // path of a kubeconfig for kubectl (admin user)
	RedisURL   string
	SinkURL    string // http://127.0.0.1:port/ — what spec.worker.sink.url should say
	Sink       *sink.Sink
	Runner     *podrunner.Runner
	// Resend is the Resend simulator; ResendURL its base URL (the manager's --resend-api-url).
	Resend    *resendsim.Server
	ResendURL string

	env       *envtest.Environment
	redis     *exec.Cmd
	redisDone chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	log       *slog.Logger
	ingress   atomic.Pointer[string] // the runner's Ingress address, once it listens
}

var setLoggerOnce sync.Once

// Start brings everything up. On error, whatever started is stopped again.
func Start(ctx context.Context, o Options) (_ *Sandbox, err error) {
	if o.Dir == "" || o.Binary == "" {
		return nil, errors.New("sandbox: Dir and Binary are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SinkLog == nil {
		o.SinkLog = o.Log
	}
	if o.IngressAddr == "" {
		o.IngressAddr = "127.0.0.1:0"
	}
	if o.SinkAddr == "" {
		o.SinkAddr = "127.0.0.1:0"
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	setLoggerOnce.Do(func() { ctrl.SetLogger(logr.FromSlogHandler(o.Log.Handler())) })
	ctx, cancel := context.WithCancel(ctx)
	s := &Sandbox{cancel: cancel, log: o.Log}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	if err := s.startControlPlane(o); err != nil {
		return s, err
	}
	if err := s.startRedis(ctx, o); err != nil {
		return s, err
	}
	if err := s.startSink(ctx, o); err != nil {
		return s, err
	}
	if err := s.startResend(o); err != nil {
		return s, err
	}
	if err := s.startManager(ctx, o); err != nil {
		return s, err
	}
	s.Runner, err = podrunner.Start(ctx, podrunner.Config{
		RestConfig:  s.RestConfig,
		Binary:      o.Binary,
		Images:      []string{Image},
		RunDir:      o.Dir,
		IngressAddr: o.IngressAddr,
		Log:         o.Log.With("component", "podrunner"),
		PodOutput:   o.PodOutput,
	})
	if err != nil {
		return s, err
	}
	s.ingress.Store(new(s.Runner.IngressAddr()))
	return s, nil
}

// IngressURL is the base URL of the local Ingress proxy.
func (s *Sandbox) IngressURL() string { return "http://" + s.Runner.IngressAddr() + "/" }

func (s *Sandbox) startControlPlane(o Options) error {
	assets, err := testutil.KubeAssetsDir()
	if err != nil {
		return err
	}
	s.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(testutil.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	start := time.Now()
	if _, err := s.env.Start(); err != nil {
		s.env = nil
		return fmt.Errorf("sandbox: starting kube-apiserver and etcd: %w", err)
	}
	user, err := s.env.AddUser(envtest.User{Name: "sandbox-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	s.RestConfig = user.Config()
	s.RestConfig.QPS, s.RestConfig.Burst = 200, 400
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	s.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, kc, 0o600); err != nil {
		return err
	}
	s.log.Info("control plane started", "apiserver", s.RestConfig.Host, "kubeconfig", s.Kubeconfig, "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

func (s *Sandbox) startRedis(ctx context.Context, o Options) error {
	port := o.RedisPort
	if port == 0 {
		var err error
		if port, err = testutil.FreePort(); err != nil {
			return err
		}
	}
	dir := filepath.Join(o.Dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice", "--protected-mode", "yes")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = pdeathsig()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("sandbox: starting redis-server (run 'make redis'): %w", err)
	}
	s.redis, s.redisDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(s.redisDone) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	if err := poll(ctx, 10*time.Second, func() error {
		select {
		case <-s.redisDone:
			return errStop{fmt.Errorf("redis-server exited at start (port %d taken?); see %s", port, logf.Name())}
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		return c.Ping(pctx).Err()
	}); err != nil {
		return err
	}
	s.RedisURL = "redis://" + addr + "/0"
	s.log.Info("redis started", "url", s.RedisURL)
	return nil
}

func (s *Sandbox) startSink(ctx context.Context, o Options) error {
	sk, err := sink.New(o.SinkLog.With("component", "sink"), o.SinkSecret)
	if err != nil {
		return err
	}
	s.Sink = sk
	bound := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	s.wg.Go(func() { errc <- sk.Serve(ctx, o.SinkAddr, func(a net.Addr) { bound <- a }) })
	select {
	case a := <-bound:
		s.SinkURL = "http://" + a.String() + "/events"
		return nil
	case err := <-errc:
		return fmt.Errorf("sandbox: sink: %w", err)
	}
}

// startResend starts the Resend simulator. Hostnames of endpoints resolve to the Ingress proxy,
// as public DNS would point them at the Ingress; IP addresses are dialled as they are.
func (s *Sandbox) startResend(o Options) error {
	sim, err := resendsim.Listen(cmp.Or(o.ResendAddr, "127.0.0.1:0"), resendsim.Options{
		TimeScale: cmp.Or(o.ResendTimeScale, 0.01),
		Log:       o.Log.With("component", "resend-simulator"),
		Resolve: func(hostport string) string {
			host, _, err := net.SplitHostPort(hostport)
			if err != nil || net.ParseIP(host) != nil || host == "localhost" {
				return ""
			}
			if addr := s.ingress.Load(); addr != nil {
				return *addr
			}
			return ""
		},
	})
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, k := range o.ResendAPIKeys {
		sim.AddKey(k, "")
	}
	s.Resend, s.ResendURL = sim, sim.URL
	s.log.Info("resend simulator started", "url", sim.URL)
	return nil
}

// startManager runs the operator's manager in-process, exactly as `resend-webhook-operator
// manager` configures it (internal/manager.Run), with metrics and probes disabled.
func (s *Sandbox) startManager(ctx context.Context, o Options) error {
	opts := manager.Options{
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		Controller: controllers.Options{Image: Image, StatusRefresh: o.StatusRefresh, Resend: controllers.ResendOptions{
			APIURL: s.ResendURL, SyncInterval: cmp.Or(o.ResendSyncInterval, 30*time.Second),
		}},
		Logger: o.Log.With("component", "manager"),
	}
	s.wg.Go(func() {
		if err := manager.Run(ctx, s.RestConfig, opts); err != nil {
			s.log.Error("manager stopped with an error", "error", err)
		}
	})
	return nil
}

// Stop ends everything Start started: pods first (graceful), then the manager, sink, Redis
// and the control plane.
func (s *Sandbox) Stop() {
	if s.Runner != nil {
		s.Runner.Stop()
	}
	s.cancel()
	s.wg.Wait()
	if s.Resend != nil {
		s.Resend.Close()
	}
	if s.redis != nil && s.redis.Process != nil {
		_ = s.redis.Process.Signal(os.Interrupt)
		select {
		case <-s.redisDone:
		case <-time.After(5 * time.Second):
			_ = s.redis.Process.Kill()
			<-s.redisDone
		}
	}
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			s.log.Warn("stopping the control plane", "error", err)
		}
	}
}

// errStop ends a poll early.
type errStop struct{ error }

// poll calls f until it returns nil, an errStop, or the timeout passes.
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if es, ok := err.(errStop); ok {
			return es.error
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
