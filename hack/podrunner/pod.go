package podrunner

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// pod is one replica of a Deployment, run as local processes (one per container).
type pod struct {
	Namespace  string
	Name       string
	Deployment string
	Hash       string // pod-template hash of the template it was started from
	Labels     map[string]string
	Ports      PortMap

	spec    corev1.PodSpec
	dir     string
	r       *Runner
	log     *slog.Logger
	notify  func() // tells the Deployment reconciler that readiness or liveness changed
	created time.Time

	mu         sync.Mutex
	mounts     []Mount
	volumes    map[string]*AtomicDir
	waiting    string // why containers have not started (e.g. a missing Secret)
	containers []*containerRun

	cancel context.CancelFunc
	done   chan struct{}
}

// containerRun is the state of one container's process across restarts.
type containerRun struct {
	name     string
	ready    atomic.Bool
	pid      atomic.Int64
	restarts atomic.Int32
}

// Ready reports whether every container passes its readiness probe.
func (p *pod) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.containers) == 0 {
		return false
	}
	for _, c := range p.containers {
		if !c.ready.Load() {
			return false
		}
	}
	return true
}

// PIDs returns the process ids of the running containers.
func (p *pod) PIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for _, c := range p.containers {
		if pid := c.pid.Load(); pid > 0 {
			pids = append(pids, int(pid))
		}
	}
	return pids
}

// start runs the pod in the background until stop.
func (p *pod) start(ctx context.Context) {
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		p.run(ctx)
	}()
}

// stop terminates the containers (SIGTERM, then SIGKILL after the grace period) and waits.
func (p *pod) stop() {
	p.cancel()
	<-p.done
}

func (p *pod) run(ctx context.Context) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		p.log.Error("pod directory", "error", err)
		return
	}
	// Volumes first: like the kubelet, containers start only once every volume could be set up.
	for {
		err := p.syncVolumes(ctx)
		if err == nil {
			break
		}
		p.setWaiting(err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	p.setWaiting("")
	var wg sync.WaitGroup
	wg.Go(func() { p.keepVolumesFresh(ctx) })
	for _, c := range p.spec.Containers {
		run := &containerRun{name: c.Name}
		p.mu.Lock()
		p.containers = append(p.containers, run)
		p.mu.Unlock()
		wg.Go(func() { p.runContainer(ctx, c, run) })
	}
	wg.Wait()
	if err := os.RemoveAll(filepath.Join(p.dir, "volumes")); err != nil {
		p.log.Warn("removing pod volumes", "error", err)
	}
}

func (p *pod) setWaiting(reason string) {
	p.mu.Lock()
	changed := p.waiting != reason
	p.waiting = reason
	p.mu.Unlock()
	if changed && reason != "" {
		p.log.Warn("pod waiting", "reason", reason)
	}
}

// syncVolumes materialises every volume from the current Secrets/ConfigMaps (kept in the
// runner's cache); on the first call it also computes the mounts.
func (p *pod) syncVolumes(ctx context.Context) error {
	p.mu.Lock()
	first := p.volumes == nil
	if first {
		p.volumes = map[string]*AtomicDir{}
	}
	p.mu.Unlock()
	local := map[string]string{}
	for _, v := range p.spec.Volumes {
		dir := filepath.Join(p.dir, "volumes", v.Name)
		local[v.Name] = dir
		if v.EmptyDir != nil {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			continue
		}
		files, err := VolumeFiles(ctx, p.r.objects, p.Namespace, v)
		if err != nil {
			return err
		}
		p.mu.Lock()
		ad := p.volumes[v.Name]
		if ad == nil {
			ad = &AtomicDir{Dir: dir}
			p.volumes[v.Name] = ad
		}
		p.mu.Unlock()
		changed, err := ad.Write(files)
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if changed && !first {
			p.log.Info("volume updated", "volume", v.Name, "files", len(files))
		}
	}
	if first {
		var mounts []Mount
		for _, c := range p.spec.Containers {
			for _, m := range c.VolumeMounts {
				dir, ok := local[m.Name]
				if !ok {
					return fmt.Errorf("container %s mounts unknown volume %q", c.Name, m.Name)
				}
				mounts = append(mounts, Mount{MountPath: m.MountPath, LocalPath: filepath.Join(dir, m.SubPath)})
			}
		}
		p.mu.Lock()
		p.mounts = mounts
		p.mu.Unlock()
	}
	return nil
}

// keepVolumesFresh re-materialises volumes every second, so Secret changes reach the files
// quickly (the kubelet does this on its sync period, up to about a minute).
func (p *pod) keepVolumesFresh(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.syncVolumes(ctx); err != nil && ctx.Err() == nil {
				// The kubelet keeps the last good content when an update cannot be applied.
				p.log.Warn("volume refresh failed; keeping the previous files", "error", err)
			}
		}
	}
}

// runContainer runs c until ctx ends, restarting it with exponential backoff when it exits
// or fails its liveness probe (restartPolicy Always, as Deployments require).
func (p *pod) runContainer(ctx context.Context, c corev1.Container, run *containerRun) {
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		err := p.runOnce(ctx, c, run)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*time.Second {
			backoff = time.Second
		}
		run.restarts.Add(1)
		p.log.Warn("container exited; restarting", "container", c.Name, "error", errString(err), "backoff", backoff.String(), "restarts", run.restarts.Load())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// runOnce starts the container's process and waits until it exits, its liveness probe fails,
// or ctx ends (then it is stopped gracefully).
func (p *pod) runOnce(ctx context.Context, c corev1.Container, run *containerRun) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	env, err := p.env(ctx, c)
	if err != nil {
		p.setWaiting(err.Error())
		return err
	}
	p.mu.Lock()
	rw := &Rewriter{Ports: &p.Ports, Mounts: p.mounts, Alloc: p.r.allocPort}
	p.mu.Unlock()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = ExpandVars(a, vars)
	}
	p.mu.Lock()
	args, err = rw.Args(args)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	logw, closeLog, err := p.r.containerOutput(p, c.Name)
	if err != nil {
		return err
	}
	defer closeLog()

	cmd := exec.CommandContext(runCtx, p.r.cfg.Binary, args...)
	cmd.Dir = p.dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = p.gracePeriod()
	if err := cmd.Start(); err != nil {
		return err
	}
	run.pid.Store(int64(cmd.Process.Pid))
	p.log.Info("container started", "container", c.Name, "pid", cmd.Process.Pid, "args", args)
	exited := make(chan struct{})
	var probes sync.WaitGroup
	probes.Go(func() { p.probeReadiness(runCtx, exited, c, run) })
	probes.Go(func() {
		if p.probeLiveness(runCtx, exited, c) {
			p.log.Warn("liveness probe failed; killing the container", "container", c.Name)
			cancel()
		}
	})
	err = cmd.Wait()
	close(exited)
	probes.Wait()
	run.pid.Store(0)
	if run.ready.Swap(false) {
		p.notify()
	}
	return err
}

// port resolves a container port (number or name) to the local port.
func (p *pod) port(nameOrNumber string) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Ports.Lookup(nameOrNumber)
}

func (p *pod) gracePeriod() time.Duration {
	grace := 30 * time.Second
	if s := p.spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	return min(grace, p.r.cfg.MaxGracePeriod)
}

// env builds the process environment: a minimal base plus the container's env and envFrom,
// resolved like the kubelet resolves them ($(VAR) references, Secret/ConfigMap keys, fieldRefs).
func (p *pod) env(ctx context.Context, c corev1.Container) ([]string, error) {
	vars := map[string]string{
		"PATH":     os.Getenv("PATH"),
		"HOME":     p.dir,
		"TMPDIR":   p.dir,
		"HOSTNAME": p.Name,
	}
	order := []string{"PATH", "HOME", "TMPDIR", "HOSTNAME"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, ef := range c.EnvFrom {
		data, err := p.envFromData(ctx, ef)
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			set(ef.Prefix+k, v)
		}
	}
	p.mu.Lock()
	rw := &Rewriter{Ports: &p.Ports, Mounts: p.mounts, Alloc: p.r.allocPort}
	p.mu.Unlock()
	for _, e := range c.Env {
		v, err := p.envValue(ctx, e, vars)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		v, err = rw.Value(v)
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func (p *pod) envFromData(ctx context.Context, ef corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case ef.SecretRef != nil:
		s, err := p.r.objects.Secret(ctx, p.Namespace, ef.SecretRef.Name)
		if apierrors.IsNotFound(err) && isTrue(ef.SecretRef.Optional) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	case ef.ConfigMapRef != nil:
		cm, err := p.r.objects.ConfigMap(ctx, p.Namespace, ef.ConfigMapRef.Name)
		if apierrors.IsNotFound(err) && isTrue(ef.ConfigMapRef.Optional) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		for k, v := range cm.Data {
			out[k] = v
		}
	}
	return out, nil
}

func (p *pod) envValue(ctx context.Context, e corev1.EnvVar, vars map[string]string) (string, error) {
	if e.ValueFrom == nil {
		return ExpandVars(e.Value, vars), nil
	}
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		switch vf.FieldRef.FieldPath {
		case "metadata.name":
			return p.Name, nil
		case "metadata.namespace":
			return p.Namespace, nil
		case "status.podIP", "status.hostIP":
			return "127.0.0.1", nil
		case "spec.nodeName":
			return "localhost", nil
		}
		return "", fmt.Errorf("env %s: fieldRef %q is not supported by the local pod runner", e.Name, vf.FieldRef.FieldPath)
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		s, err := p.r.objects.Secret(ctx, p.Namespace, ref.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
				return "", nil
			}
			return "", fmt.Errorf("env %s: %w", e.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok && !isTrue(ref.Optional) {
			return "", fmt.Errorf("env %s: secret %s has no key %q", e.Name, ref.Name, ref.Key)
		}
		return string(v), nil
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		cm, err := p.r.objects.ConfigMap(ctx, p.Namespace, ref.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
				return "", nil
			}
			return "", fmt.Errorf("env %s: %w", e.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !isTrue(ref.Optional) {
			return "", fmt.Errorf("env %s: configmap %s has no key %q", e.Name, ref.Name, ref.Key)
		}
		return v, nil
	}
	return "", fmt.Errorf("env %s: valueFrom source not supported by the local pod runner", e.Name)
}

// probeReadiness polls the readiness probe (at least every 500 ms, faster than the kubelet's
// periodSeconds so the sandbox converges quickly) and flips run.ready, honouring the
// success and failure thresholds. Without a probe, a running container is ready.
func (p *pod) probeReadiness(ctx context.Context, exited <-chan struct{}, c corev1.Container, run *containerRun) {
	probe := c.ReadinessProbe
	if probe == nil {
		if !run.ready.Swap(true) {
			p.notify()
		}
		return
	}
	period := min(time.Duration(max(probe.PeriodSeconds, 1))*time.Second, 500*time.Millisecond)
	success, failure := max(probe.SuccessThreshold, 1), max(probe.FailureThreshold, 1)
	var okRun, failRun int32
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if err := p.probe(ctx, probe); err == nil {
			okRun, failRun = okRun+1, 0
			if okRun >= success && !run.ready.Swap(true) {
				p.notify()
			}
		} else {
			okRun, failRun = 0, failRun+1
			if failRun >= failure && run.ready.Swap(false) {
				p.log.Info("readiness probe failing", "container", c.Name, "error", err)
				p.notify()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-exited:
			return
		case <-t.C:
		}
	}
}

// probeLiveness polls the liveness probe with the probe's own timing (initial delay, period,
// failure threshold) and returns true when the container should be restarted.
func (p *pod) probeLiveness(ctx context.Context, exited <-chan struct{}, c corev1.Container) bool {
	probe := c.LivenessProbe
	if probe == nil {
		return false
	}
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-exited:
			return false
		case <-time.After(d):
			return true
		}
	}
	if !wait(time.Duration(probe.InitialDelaySeconds) * time.Second) {
		return false
	}
	period := time.Duration(max(probe.PeriodSeconds, 1)) * time.Second
	failures := int32(0)
	for {
		if err := p.probe(ctx, probe); err != nil {
			failures++
			if failures >= max(probe.FailureThreshold, 1) {
				return true
			}
		} else {
			failures = 0
		}
		if !wait(period) {
			return false
		}
	}
}

// probe runs one httpGet or tcpSocket probe against the pod's local ports. Exec and gRPC
// probes cannot be run locally and count as passing.
func (p *pod) probe(ctx context.Context, probe *corev1.Probe) error {
	timeout := time.Duration(max(probe.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case probe.HTTPGet != nil:
		g := probe.HTTPGet
		port, ok := p.port(g.Port.String())
		if !ok {
			return fmt.Errorf("probe port %s is not a container port", g.Port.String())
		}
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		url := scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + g.Path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("probe %s: HTTP %d", g.Path, resp.StatusCode)
		}
		return nil
	case probe.TCPSocket != nil:
		port, ok := p.port(probe.TCPSocket.Port.String())
		if !ok {
			return fmt.Errorf("probe port %s is not a container port", probe.TCPSocket.Port.String())
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return nil
}

var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe certificates either
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
