package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// reconcilePod makes the local processes follow the Pod and the Pod's status follow the
// processes: it starts a pod, refreshes its volumes, stops it when it is deleted, and deletes
// the object for good once nothing runs for it. Workers report their changes through
// Agent.changed, so all API writes for pods happen here.
func (a *Agent) reconcilePod(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if a.isStopping() {
		return reconcile.Result{}, nil
	}
	var pod corev1.Pod
	err := a.client.Get(ctx, req.NamespacedName, &pod)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	gone := apierrors.IsNotFound(err)
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	a.mu.Lock()
	w := a.workers[req.NamespacedName]
	if w == nil && !gone && pod.DeletionTimestamp == nil && !terminal {
		ip, err := a.ips.allocate(pod.Spec.Containers)
		if err != nil {
			a.mu.Unlock()
			return reconcile.Result{RequeueAfter: 5 * time.Second}, err
		}
		w = newPodWorker(a, pod.DeepCopy(), ip)
		a.workers[req.NamespacedName] = w
		w.start()
	}
	a.mu.Unlock()

	switch {
	case w == nil && pod.DeletionTimestamp != nil && !gone:
		return reconcile.Result{}, a.finalDelete(ctx, &pod) // nothing runs for it
	case w == nil:
		return reconcile.Result{}, nil
	case gone || w.uid != pod.UID:
		// Deleted without a grace period, or replaced by a new pod of the same name (which
		// starts once this one is gone).
		w.terminate(a.gracePeriod(w.pod, nil))
		if !w.finished() {
			return reconcile.Result{}, nil // its end has it reconciled again
		}
		a.forget(w)
		if gone {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	case pod.DeletionTimestamp != nil:
		w.terminate(a.gracePeriod(&pod, pod.DeletionGracePeriodSeconds))
	default:
		w.resyncVolumes()
	}
	if err := w.writeStatus(ctx, &pod); apierrors.IsConflict(err) {
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil // the cache lags our last write
	} else if err != nil {
		return reconcile.Result{}, err
	}
	if w.finished() && pod.DeletionTimestamp != nil {
		if err := a.finalDelete(ctx, &pod); err != nil {
			return reconcile.Result{}, err
		}
		a.forget(w)
	}
	return reconcile.Result{}, nil
}

// gracePeriod is the pod's termination grace period (override, e.g. the deletion's, first),
// capped by MaxGracePeriod.
func (a *Agent) gracePeriod(pod *corev1.Pod, override *int64) time.Duration {
	secs := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		secs = *s
	}
	if override != nil {
		secs = *override
	}
	return min(time.Duration(secs)*time.Second, a.cfg.MaxGracePeriod)
}

// finalDelete removes the Pod object once nothing runs for it, as the kubelet does after a
// graceful termination (the UID precondition spares a new pod of the same name).
func (a *Agent) finalDelete(ctx context.Context, pod *corev1.Pod) error {
	err := a.client.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// forget drops a finished worker, its IP and its directory (volumes and logs), as the kubelet
// cleans up after a deleted pod.
func (a *Agent) forget(w *podWorker) {
	a.mu.Lock()
	if a.workers[w.key] == w {
		delete(a.workers, w.key)
	}
	a.mu.Unlock()
	a.ips.release(w.ip)
	if err := os.RemoveAll(w.dir); err != nil {
		w.log.Warn("removing the pod directory", "error", err)
	}
	w.log.Info("pod removed")
}

// podWorker runs one pod: its volumes and one process per container.
type podWorker struct {
	a   *Agent
	pod *corev1.Pod // as first seen; the parts used here are immutable
	key types.NamespacedName
	uid types.UID
	ip  netip.Addr // the pod IP in the API
	lo  netip.Addr // its loopback twin, where the processes listen
	dir string
	log *slog.Logger

	ctx     context.Context // ends when the pod must stop
	cancel  context.CancelFunc
	grace   atomic.Int64 // the termination grace period, set before cancel
	resync  chan struct{}
	done    chan struct{} // closed when every process has ended
	started time.Time

	mu         sync.Mutex
	containers []*container
	volumes    map[string]*atomicDir // only run's goroutine uses it
	mounts     map[string][]mount    // container name → its mounts
}

func newPodWorker(a *Agent, pod *corev1.Pod, ip netip.Addr) *podWorker {
	key := client.ObjectKeyFromObject(pod)
	w := &podWorker{
		a: a, pod: pod, key: key, uid: pod.UID, ip: ip, lo: LoopbackIP(ip),
		dir:     filepath.Join(a.cfg.RunDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)[:8]),
		log:     a.log.With("pod", key.String()),
		resync:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		started: time.Now(),
		volumes: map[string]*atomicDir{},
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	for _, c := range pod.Spec.Containers {
		w.containers = append(w.containers, &container{spec: c,
			waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}})
	}
	return w
}

func (w *podWorker) start() {
	w.log.Info("starting pod", "ip", w.ip.String(), "listensOn", w.lo.String(), "dir", w.dir)
	go func() {
		w.run()
		close(w.done)
		w.changed()
	}()
}

// terminate stops the pod's containers with the given grace period; it does not block.
func (w *podWorker) terminate(grace time.Duration) {
	if w.ctx.Err() == nil {
		w.grace.Store(int64(grace))
		w.cancel()
	}
}

func (w *podWorker) finished() bool { return isClosed(w.done) }

// resyncVolumes asks the worker to rewrite its volumes from the current objects.
func (w *podWorker) resyncVolumes() {
	select {
	case w.resync <- struct{}{}:
	default:
	}
}

// changed has the pod reconciled: its local state changed.
func (w *podWorker) changed() {
	ev := event.GenericEvent{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.key.Namespace, Name: w.key.Name}}}
	select {
	case w.a.changed <- ev:
	case <-w.a.stopping:
	}
}

// run sets up the volumes, runs the containers until the pod stops (a pod whose containers
// all finished for good waits for its deletion), and keeps the volumes fresh meanwhile.
func (w *podWorker) run() {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		w.setAllWaiting("CreateContainerError", err.Error())
		<-w.ctx.Done()
		return
	}
	if len(w.pod.Spec.InitContainers) > 0 {
		msg := "init containers are not supported by the node agent"
		w.setAllWaiting("CreateContainerConfigError", msg)
		w.event(corev1.EventTypeWarning, "Failed", "%s", msg)
		<-w.ctx.Done()
		return
	}
	// Like the kubelet, start no container before every volume is set up.
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for lastErr := ""; ; {
		err := w.syncVolumes()
		if err == nil {
			break
		}
		if err.Error() != lastErr {
			lastErr = err.Error()
			w.setAllWaiting("ContainerCreating", lastErr)
			w.event(corev1.EventTypeWarning, "FailedMount", "%s", lastErr)
		}
		select {
		case <-w.ctx.Done():
			return
		case <-w.resync:
		case <-retry.C:
		}
	}
	var wg sync.WaitGroup
	for _, c := range w.containers {
		wg.Go(func() { w.runContainer(c) })
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	for {
		select {
		case <-w.resync:
			if err := w.syncVolumes(); err != nil {
				// The kubelet keeps the last good content when an update cannot be applied.
				w.log.Warn("volume refresh failed; keeping the previous files", "error", err)
			}
		case <-finished:
			w.changed()
			<-w.ctx.Done()
			return
		case <-w.ctx.Done():
			<-finished
			return
		}
	}
}

// syncVolumes writes every volume's files from the current objects (atomically, only when
// they changed) and computes the containers' mounts on the first success.
func (w *podWorker) syncVolumes() error {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	dirs := map[string]string{}
	for _, v := range w.pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		dirs[v.Name] = dir
		if v.EmptyDir != nil {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			continue
		}
		files, err := w.volumeFiles(ctx, v)
		if err == nil {
			if w.volumes[v.Name] == nil {
				w.volumes[v.Name] = &atomicDir{dir: dir}
			}
			var changed bool
			if changed, err = w.volumes[v.Name].write(files); changed {
				w.log.Info("volume written", "volume", v.Name, "files", len(files))
			}
		}
		if err != nil {
			return fmt.Errorf("MountVolume.SetUp failed for volume %q: %w", v.Name, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mounts != nil {
		return nil
	}
	mounts := map[string][]mount{}
	for _, c := range w.pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			dir, ok := dirs[m.Name]
			if !ok {
				return fmt.Errorf("container %s mounts volume %q, which the pod does not have", c.Name, m.Name)
			}
			mounts[c.Name] = append(mounts[c.Name], mount{path: m.MountPath, local: filepath.Join(dir, m.SubPath)})
		}
	}
	w.mounts = mounts
	return nil
}

func (w *podWorker) setAllWaiting(reason, message string) {
	w.mu.Lock()
	for _, c := range w.containers {
		if c.running == nil {
			c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: message}
		}
	}
	w.mu.Unlock()
	w.changed()
}

// event records an event about the pod (best effort, nothing while the agent stops).
func (w *podWorker) event(eventType, reason, format string, args ...any) {
	if !w.a.isStopping() {
		w.a.recorder.Eventf(w.pod, nil, eventType, reason, reason, format, args...)
	}
}

// writeStatus patches the Pod's status when it differs from what the agent observes, with an
// optimistic lock so that conditions others add meanwhile are not lost.
func (w *podWorker) writeStatus(ctx context.Context, pod *corev1.Pod) error {
	status := w.status(pod, time.Now())
	if equality.Semantic.DeepEqual(pod.Status, status) {
		return nil
	}
	patched := pod.DeepCopy()
	patched.Status = status
	return w.a.client.Status().Patch(ctx, patched, client.MergeFromWithOptions(pod, client.MergeFromWithOptimisticLock{}))
}

// status is the pod's status as the agent sees it at now, on top of current (conditions the
// agent does not own, e.g. PodScheduled, are kept).
func (w *podWorker) status(current *corev1.Pod, now time.Time) corev1.PodStatus {
	st := *current.Status.DeepCopy()
	st.HostIP, st.HostIPs = w.a.cfg.NodeIP, []corev1.HostIP{{IP: w.a.cfg.NodeIP}}
	st.PodIP, st.PodIPs = w.ip.String(), []corev1.PodIP{{IP: w.ip.String()}}
	st.StartTime = seconds(w.started)

	w.mu.Lock()
	st.ContainerStatuses = make([]corev1.ContainerStatus, len(w.containers))
	var unready []string
	for i, c := range w.containers {
		st.ContainerStatuses[i] = c.status()
		if !c.ready {
			unready = append(unready, c.spec.Name)
		}
	}
	w.mu.Unlock()
	st.Phase = phase(st.ContainerStatuses)

	ready, reason, message := corev1.ConditionTrue, "", ""
	if len(unready) > 0 {
		ready, reason = corev1.ConditionFalse, "ContainersNotReady"
		message = "containers with unready status: [" + strings.Join(unready, " ") + "]"
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		reason = "PodCompleted"
	}
	for _, c := range []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: ready, Reason: reason, Message: message},
		{Type: corev1.PodReady, Status: ready, Reason: reason, Message: message},
	} {
		setCondition(&st.Conditions, c, now)
	}
	return st
}

// setCondition sets c in conds, keeping its transition time while its status is unchanged.
func setCondition(conds *[]corev1.PodCondition, c corev1.PodCondition, now time.Time) {
	c.LastTransitionTime = *seconds(now)
	i := slices.IndexFunc(*conds, func(o corev1.PodCondition) bool { return o.Type == c.Type })
	if i < 0 {
		*conds = append(*conds, c)
		return
	}
	if (*conds)[i].Status == c.Status {
		c.LastTransitionTime = (*conds)[i].LastTransitionTime
	}
	(*conds)[i] = c
}

// phase is the pod phase from its container statuses, as the kubelet derives it: a container
// that waits to be restarted counts as running, and once every container has terminated for
// good (no restart pending, e.g. while the pod is deleted) the pod is Succeeded or Failed.
func phase(statuses []corev1.ContainerStatus) corev1.PodPhase {
	var running, waiting, failed int
	for _, s := range statuses {
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			if s.State.Terminated.ExitCode != 0 {
				failed++
			}
		case s.LastTerminationState.Terminated != nil:
			running++
		default:
			waiting++
		}
	}
	switch {
	case len(statuses) == 0 || waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case failed > 0:
		return corev1.PodFailed
	}
	return corev1.PodSucceeded
}

// seconds is t at the API's time resolution, so a written status compares equal when read back.
func seconds(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return &metav1.Time{Time: t.Truncate(time.Second)}
}
