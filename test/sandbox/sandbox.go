// Package sandbox assembles the local environment that `make dev` and the end-to-end test run:
// a control plane with Kubernetes' own controllers (package test/cluster) and the CRD
// installed, a node agent that runs the pods the operator renders as local processes of the
// operator binary and serves the Ingresses (package test/nodeagent), a private redis-server, a
// Resend simulator the manager registers webhooks with, the operator's manager (in-process), and
// an echo sink. Everything listens on 127.0.0.1 (pods on loopback twins of their pod IPs) and
// Stop ends all of it.
package sandbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendsim"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/cluster"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/nodeagent"
	"github.com/resend-webhook-operator/resend-webhook-operator/test/sink"
)

// Image is the pod image the sandbox's manager renders; the node agent runs it as the binary.
const Image = "resend-webhook-operator:dev"

// Options configure a sandbox. Zero values pick free loopback ports.
type Options struct {
	Dir         string // run directory (kubeconfig, control-plane logs, redis, pod dirs); required
	Binary      string // the operator binary the node agent runs for Image; required
	RedisPort   int    // 0 = a free port
	IngressAddr string // default 127.0.0.1:0
	SinkAddr    string // default 127.0.0.1:0
	SinkSecret  string // whsec_ secret the worker signs deliveries with; empty = not verified
	// StatusRefresh is how often the controller re-reads queue figures and at most writes them
	// to status (the manager's --status-refresh and --queue-status-interval; default 30s).
	StatusRefresh time.Duration
	Log           *slog.Logger // sandbox, control plane, node agent, manager and sink logs
	SinkLog       *slog.Logger // default Log
	PodOutput     io.Writer    // every container's output, line-prefixed; nil = only kubectl logs

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
	Kubeconfig string // path of a kubeconfig for kubectl (cluster admin)
	RedisURL   string
	SinkURL    string // what spec.worker.sink.url should say
	Sink       *sink.Sink
	Agent      *nodeagent.Agent
	// Resend is the Resend simulator; ResendURL its base URL (the manager's --resend-api-url).
	Resend    *resendsim.Server
	ResendURL string

	cluster *cluster.Cluster
	redis   *testutil.Redis
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	log     *slog.Logger
	ingress atomic.Pointer[string] // the agent's Ingress address, once it listens
}

var setLoggerOnce sync.Once

// Start brings everything up. On error, whatever started is stopped again.
func Start(ctx context.Context, o Options) (_ *Sandbox, err error) {
	if o.Dir == "" || o.Binary == "" {
		return nil, errors.New("sandbox: Dir and Binary are required")
	}
	o.Log = cmp.Or(o.Log, slog.New(slog.DiscardHandler))
	o.SinkLog = cmp.Or(o.SinkLog, o.Log)
	setLoggerOnce.Do(func() { ctrl.SetLogger(logr.FromSlogHandler(o.Log.Handler())) })
	ctx, cancel := context.WithCancel(ctx)
	s := &Sandbox{cancel: cancel, log: o.Log}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	started := time.Now()
	s.cluster, err = cluster.Start(ctx, cluster.Options{
		Dir:     o.Dir,
		CRDDirs: []string{filepath.Join(testutil.RepoRoot(), "config", "crd", "bases")},
		Log:     o.Log.With("component", "cluster"),
	})
	if err != nil {
		return s, fmt.Errorf("sandbox: %w", err)
	}
	s.RestConfig, s.Kubeconfig = s.cluster.RestConfig, s.cluster.Kubeconfig
	if s.redis, err = testutil.NewRedisOn(o.RedisPort, filepath.Join(o.Dir, "redis")); err != nil {
		return s, fmt.Errorf("sandbox: %w", err)
	}
	s.RedisURL = s.redis.URL()
	if err := s.startSink(ctx, o); err != nil {
		return s, err
	}
	if err := s.startResend(o); err != nil {
		return s, err
	}
	s.startManager(ctx, o)
	kubeletTLS, err := s.cluster.Kubelet.ServerTLS("127.0.0.1")
	if err != nil {
		return s, fmt.Errorf("sandbox: %w", err)
	}
	s.Agent, err = nodeagent.Start(ctx, nodeagent.Config{
		RestConfig:  s.RestConfig,
		KubeletTLS:  kubeletTLS,
		Images:      map[string]string{Image: o.Binary},
		RunDir:      filepath.Join(o.Dir, "pods"),
		IngressAddr: cmp.Or(o.IngressAddr, "127.0.0.1:0"),
		Log:         o.Log.With("component", "nodeagent"),
		PodOutput:   o.PodOutput,
	})
	if err != nil {
		return s, fmt.Errorf("sandbox: %w", err)
	}
	s.ingress.Store(new(s.Agent.IngressAddr()))
	s.log.Info("sandbox started", "redis", s.RedisURL, "sink", s.SinkURL, "resend", s.ResendURL,
		"ingress", s.Agent.IngressAddr(), "took", time.Since(started).Round(time.Millisecond).String())
	return s, nil
}

// IngressAddr is the host:port of the Ingress proxy.
func (s *Sandbox) IngressAddr() string { return s.Agent.IngressAddr() }

func (s *Sandbox) startSink(ctx context.Context, o Options) error {
	sk, err := sink.New(o.SinkLog.With("component", "sink"), o.SinkSecret)
	if err != nil {
		return err
	}
	s.Sink = sk
	bound := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	s.wg.Go(func() { errc <- sk.Serve(ctx, cmp.Or(o.SinkAddr, "127.0.0.1:0"), func(a net.Addr) { bound <- a }) })
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
	return nil
}

// startManager runs the operator's manager in-process, exactly as `resend-webhook-operator
// manager` configures it (cmd/manager.Run), with metrics and probes disabled.
func (s *Sandbox) startManager(ctx context.Context, o Options) {
	opts := manager.Options{
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		Controller: controllers.Options{Image: Image, StatusRefresh: o.StatusRefresh, QueueStatusInterval: o.StatusRefresh, Resend: controllers.ResendOptions{
			APIURL: s.ResendURL, SyncInterval: cmp.Or(o.ResendSyncInterval, 30*time.Second),
		}},
		Logger: o.Log.With("component", "manager"),
	}
	s.wg.Go(func() {
		if err := manager.Run(ctx, s.RestConfig, opts); err != nil {
			s.log.Error("manager stopped with an error", "error", err)
		}
	})
}

// Stop ends everything Start started: the pods first (SIGTERM, their grace period capped at
// 10 s, SIGKILL), then the manager, sink, simulator, Redis and the control plane.
func (s *Sandbox) Stop() {
	if s.Agent != nil {
		s.Agent.Stop()
	}
	s.cancel()
	s.wg.Wait()
	if s.Resend != nil {
		s.Resend.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
	if s.cluster != nil {
		s.cluster.Stop()
	}
}
