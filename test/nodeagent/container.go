package nodeagent

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// readinessPeriod caps a readiness probe's period: the sandbox should see a pod Ready within
// a moment, not after periodSeconds. Liveness probes keep their own timing.
const readinessPeriod = 500 * time.Millisecond

// container is one container of a pod across its restarts; guarded by the worker's mu.
type container struct {
	spec       corev1.Container
	waiting    *corev1.ContainerStateWaiting
	running    *corev1.ContainerStateRunning
	terminated *corev1.ContainerStateTerminated
	last       *corev1.ContainerStateTerminated
	ready      bool
	restarts   int32
	id         string
	imageID    string
	log        *containerLog // the current (or last) instance's log
}

func (c *container) status() corev1.ContainerStatus {
	s := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: c.imageID, ContainerID: c.id,
		Ready: c.ready, RestartCount: c.restarts, Started: new(c.running != nil),
	}
	switch {
	case c.running != nil:
		s.State.Running = c.running
	case c.terminated != nil:
		s.State.Terminated = c.terminated
	default:
		s.State.Waiting = c.waiting
	}
	s.LastTerminationState.Terminated = c.last
	return s
}

// runContainer runs c until the pod stops, restarting it per the pod's restartPolicy with
// exponential backoff (reset after a run of a minute).
func (w *podWorker) runContainer(c *container) {
	backoff := minBackoff
	defer func() { // stopped while waiting to restart: report the last run as final
		w.mu.Lock()
		if c.running == nil && c.terminated == nil && c.last != nil {
			c.terminated = c.last
		}
		w.mu.Unlock()
	}()
	for w.ctx.Err() == nil {
		cmd, reason, err := w.prepare(c)
		if err != nil {
			w.setWaiting(c, reason, err.Error())
			w.event(corev1.EventTypeWarning, "Failed", "Error: %s", err)
			if reason == "ErrImagePull" { // the image map does not change while the agent runs
				<-w.ctx.Done()
				return
			}
			if !sleepCtx(w.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		term := w.runProcess(c, cmd)
		if w.ctx.Err() != nil {
			return
		}
		policy := w.pod.Spec.RestartPolicy
		if policy == corev1.RestartPolicyNever || policy == corev1.RestartPolicyOnFailure && term.ExitCode == 0 {
			return
		}
		if term.FinishedAt.Sub(term.StartedAt.Time) > time.Minute {
			backoff = minBackoff
		}
		msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, c.spec.Name, w.key.Name)
		w.mu.Lock()
		c.last, c.terminated = term, nil
		c.restarts++
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}
		w.mu.Unlock()
		w.changed()
		w.log.Warn("container exited; restarting", "container", c.spec.Name, "exitCode", term.ExitCode, "backoff", backoff.String())
		w.event(corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s", c.spec.Name)
		if !sleepCtx(w.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *podWorker) setWaiting(c *container, reason, message string) {
	w.mu.Lock()
	c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: message}
	w.mu.Unlock()
	w.changed()
}

// prepare builds the container's process: the executable its image maps to, its args and env
// resolved and localised. On error it also returns the kubelet's waiting reason.
func (w *podWorker) prepare(c *container) (*exec.Cmd, string, error) {
	exe, ok := w.a.cfg.Images[c.spec.Image]
	if !ok {
		return nil, "ErrImagePull", fmt.Errorf("image %q is not in the node agent's image map (it runs %s)",
			c.spec.Image, strings.Join(slices.Sorted(maps.Keys(w.a.cfg.Images)), ", "))
	}
	if len(c.spec.Command) > 0 {
		return nil, "CreateContainerConfigError", errors.New("the node agent runs the image's executable with the container's args; command is not supported")
	}
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	vars, err := w.env(ctx, c.spec)
	if err != nil {
		return nil, "CreateContainerConfigError", err
	}
	w.mu.Lock()
	mounts := w.mounts[c.spec.Name]
	w.mu.Unlock()
	var env []string
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, name+"="+localize(vars[name], w.lo, mounts))
	}
	args := make([]string, len(c.spec.Args))
	for i, a := range c.spec.Args {
		args[i] = localize(expand(a, vars), w.lo, mounts)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env, cmd.Dir = env, w.dir
	// Its own process group, so stopping reaches its children too.
	cmd.SysProcAttr = testutil.ChildProcAttr()
	cmd.SysProcAttr.Setpgid = true
	w.mu.Lock()
	c.imageID = agentName + "://" + exe
	w.mu.Unlock()
	return cmd, "", nil
}

// runProcess runs one instance of the container until it exits, fails its liveness probe, or
// the pod stops, and returns how it terminated.
func (w *podWorker) runProcess(c *container, cmd *exec.Cmd) *corev1.ContainerStateTerminated {
	w.mu.Lock()
	instance := c.restarts
	w.mu.Unlock()
	lg, err := openContainerLog(filepath.Join(w.dir, "logs", c.spec.Name), instance)
	if err == nil {
		lg.echo = w.a.echo(w.key, c.spec.Name)
		cmd.Stdout, cmd.Stderr = lg.stream("stdout"), lg.stream("stderr")
		// Wait returns at most a second after the process exits, even if a child of it
		// still holds its output (the whole group is killed then).
		cmd.WaitDelay = time.Second
		if err = cmd.Start(); err != nil {
			lg.close()
		}
	}
	if err != nil {
		now := seconds(time.Now())
		w.setWaiting(c, "RunContainerError", err.Error())
		w.event(corev1.EventTypeWarning, "Failed", "Error: %s", err)
		return &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: *now, FinishedAt: *now}
	}
	pgid := cmd.Process.Pid
	started := time.Now()
	w.mu.Lock()
	c.running = &corev1.ContainerStateRunning{StartedAt: *seconds(started)}
	c.waiting, c.terminated = nil, nil
	c.id = fmt.Sprintf("%s://%s-%s-%d", agentName, w.uid, c.spec.Name, instance)
	c.log = lg
	c.ready = c.spec.ReadinessProbe == nil
	w.mu.Unlock()
	w.changed()
	// Not the args: $(VAR) references may have put secret values into them.
	w.log.Info("container started", "container", c.spec.Name, "pid", pgid, "executable", cmd.Path)
	w.event(corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)

	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); lg.close(); close(exited) }()
	probeCtx, stopProbes := context.WithCancel(w.ctx)
	unhealthy := make(chan struct{})
	var probes sync.WaitGroup
	if p := c.spec.ReadinessProbe; p != nil {
		probes.Go(func() { w.probeReadiness(probeCtx, c, p) })
	}
	if p := c.spec.LivenessProbe; p != nil {
		probes.Go(func() { w.probeLiveness(probeCtx, c, p, unhealthy) })
	}
	select {
	case <-exited:
	case <-w.ctx.Done():
		w.event(corev1.EventTypeNormal, "Killing", "Stopping container %s", c.spec.Name)
		stopGroup(pgid, exited, time.Duration(w.grace.Load()))
	case <-unhealthy:
		w.event(corev1.EventTypeNormal, "Killing", "Container %s failed liveness probe, will be restarted", c.spec.Name)
		stopGroup(pgid, exited, w.a.gracePeriod(w.pod, c.spec.LivenessProbe.TerminationGracePeriodSeconds))
	}
	// As a container runtime does, leave nothing of the container behind.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	stopProbes()
	probes.Wait()

	code := int32(cmd.ProcessState.ExitCode())
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int32(ws.Signal())
	}
	term := &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: "Completed", ContainerID: c.id,
		StartedAt: *seconds(started), FinishedAt: *seconds(time.Now()),
	}
	if code != 0 {
		term.Reason = "Error"
	}
	w.mu.Lock()
	c.running, c.ready, c.terminated = nil, false, term
	w.mu.Unlock()
	w.changed()
	w.log.Info("container exited", "container", c.spec.Name, "exitCode", code)
	return term
}

// stopGroup sends SIGTERM to the process group and SIGKILL after grace unless it exited.
func stopGroup(pgid int, exited <-chan struct{}, grace time.Duration) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
}

// probeReadiness runs the readiness probe (at most readinessPeriod apart) and sets the
// container's readiness, honouring the success and failure thresholds.
func (w *podWorker) probeReadiness(ctx context.Context, c *container, p *corev1.Probe) {
	period := min(probeSeconds(p.PeriodSeconds, 10), readinessPeriod)
	w.probeLoop(ctx, c, p, period, func(okRun, failRun int32, err error) bool {
		w.mu.Lock()
		was := c.ready
		if okRun >= max(p.SuccessThreshold, 1) {
			c.ready = true
		} else if failRun >= max(p.FailureThreshold, 1) {
			c.ready = false
		}
		now := c.ready
		w.mu.Unlock()
		if was != now {
			w.changed()
			if !now {
				w.log.Info("readiness probe failing", "container", c.spec.Name, "error", err)
				w.event(corev1.EventTypeWarning, "Unhealthy", "Readiness probe failed: %s", err)
			}
		}
		return true
	})
}

// probeLiveness runs the liveness probe on its own timing and closes unhealthy once it failed
// failureThreshold times in a row.
func (w *podWorker) probeLiveness(ctx context.Context, c *container, p *corev1.Probe, unhealthy chan<- struct{}) {
	w.probeLoop(ctx, c, p, probeSeconds(p.PeriodSeconds, 10), func(_, failRun int32, err error) bool {
		if err != nil {
			w.event(corev1.EventTypeWarning, "Unhealthy", "Liveness probe failed: %s", err)
		}
		if failRun >= max(p.FailureThreshold, 1) {
			close(unhealthy)
			return false
		}
		return true
	})
}

// probeLoop probes after the initial delay, then every period, and passes the consecutive
// successes and failures to result until it returns false or ctx ends.
func (w *podWorker) probeLoop(ctx context.Context, c *container, p *corev1.Probe, period time.Duration, result func(okRun, failRun int32, err error) bool) {
	var okRun, failRun int32
	for delay := probeSeconds(p.InitialDelaySeconds, 0); sleepCtx(ctx, delay); delay = period {
		err := w.probe(ctx, c, p)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		if !result(okRun, failRun, err) {
			return
		}
	}
}

// probeSeconds is a probe's seconds field as a duration, def when unset (0).
func probeSeconds(s int32, def time.Duration) time.Duration {
	if s <= 0 {
		return def
	}
	return time.Duration(s) * time.Second
}

// sleepCtx waits d; false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet probes do not verify certificates either
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// probe runs one httpGet probe against the pod (its loopback twin). The operator renders HTTP
// probes only: exec, tcpSocket and gRPC probes are not run and count as passing.
func (w *podWorker) probe(ctx context.Context, c *container, p *corev1.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, probeSeconds(p.TimeoutSeconds, time.Second))
	defer cancel()
	if g := p.HTTPGet; g != nil {
		port, err := containerPort(c.spec, g.Port)
		if err != nil {
			return err
		}
		scheme := strings.ToLower(string(cmp.Or(g.Scheme, corev1.URISchemeHTTP)))
		host := cmp.Or(g.Host, w.lo.String())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+g.Path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/"+strings.TrimPrefix(kubeVersion(), "v"))
		for _, h := range g.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	}
	return nil
}

// containerPort resolves a probe port (a number or a container port's name).
func containerPort(c corev1.Container, port intstr.IntOrString) (string, error) {
	if port.Type == intstr.Int {
		return strconv.Itoa(int(port.IntVal)), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return strconv.Itoa(int(p.ContainerPort)), nil
		}
	}
	return "", fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}
