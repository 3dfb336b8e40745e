package nodeagent

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	leaseDuration  = 40 * time.Second // the kubelet's default
	leaseRenew     = 10 * time.Second // a quarter of the duration, as the kubelet does
	statusInterval = time.Minute      // Ready heartbeat when nothing else changes
)

// registerNode creates the Node (or takes over an existing one of the same name) with its
// status, like a kubelet registering itself.
func (a *Agent) registerNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName}}
	err := a.api.Get(ctx, client.ObjectKeyFromObject(node), node)
	switch {
	case apierrors.IsNotFound(err):
		node.Labels = map[string]string{
			corev1.LabelHostname:   a.cfg.NodeName,
			corev1.LabelOSStable:   runtime.GOOS,
			corev1.LabelArchStable: runtime.GOARCH,
		}
		cidr := a.cfg.PodCIDR.Masked().String()
		node.Spec = corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}}
		if err := a.client.Create(ctx, node); err != nil {
			return fmt.Errorf("nodeagent: registering node %s: %w", a.cfg.NodeName, err)
		}
	case err != nil:
		return fmt.Errorf("nodeagent: reading node %s: %w", a.cfg.NodeName, err)
	}
	if err := a.postNodeStatus(ctx, node); err != nil {
		return err
	}
	return a.renewLease(ctx, node)
}

// keepNodeFresh renews the Lease and posts the Ready heartbeat until ctx ends.
func (a *Agent) keepNodeFresh(ctx context.Context) {
	lease := time.NewTicker(leaseRenew)
	defer lease.Stop()
	status := time.NewTicker(statusInterval)
	defer status.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
			node := &corev1.Node{}
			if err = a.api.Get(ctx, client.ObjectKey{Name: a.cfg.NodeName}, node); err == nil {
				err = a.renewLease(ctx, node)
			}
		case <-status.C:
			node := &corev1.Node{}
			if err = a.api.Get(ctx, client.ObjectKey{Name: a.cfg.NodeName}, node); err == nil {
				err = a.postNodeStatus(ctx, node)
			}
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("keeping the node fresh", "node", a.cfg.NodeName, "error", err)
		}
	}
}

// postNodeStatus writes capacity, addresses, the kubelet endpoint and a fresh Ready condition.
func (a *Agent) postNodeStatus(ctx context.Context, node *corev1.Node) error {
	orig := node.DeepCopy()
	now := metav1.Now()
	_, portStr, _ := net.SplitHostPort(a.kubeletAddr)
	port, _ := strconv.Atoi(portStr)
	node.Status.Capacity = a.cfg.Capacity
	node.Status.Allocatable = a.cfg.Capacity
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIP},
		{Type: corev1.NodeHostName, Address: a.cfg.NodeName},
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          kubeVersion(),
		OperatingSystem:         runtime.GOOS,
		Architecture:            runtime.GOARCH,
		ContainerRuntimeVersion: agentName + "://local-processes",
		OSImage:                 "local processes (sandbox node agent)",
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "node agent is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	for _, old := range orig.Status.Conditions {
		if old.Type == ready.Type && old.Status == ready.Status {
			ready.LastTransitionTime = old.LastTransitionTime
		}
	}
	conds := []corev1.NodeCondition{ready}
	node.Status.Conditions = conds
	if err := a.client.Status().Patch(ctx, node, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("nodeagent: posting node status: %w", err)
	}
	return nil
}

// renewLease creates or renews the Node's Lease in kube-node-lease (owned by the Node, as the
// kubelet's is, so it goes with it).
func (a *Agent) renewLease(ctx context.Context, node *corev1.Node) error {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: corev1.NamespaceNodeLease, Name: node.Name}}
	err := a.api.Get(ctx, client.ObjectKeyFromObject(lease), lease)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	create := err != nil
	lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
	lease.Spec.HolderIdentity = new(node.Name)
	lease.Spec.LeaseDurationSeconds = new(int32(leaseDuration / time.Second))
	lease.Spec.RenewTime = new(metav1.NowMicro())
	if create {
		err = a.client.Create(ctx, lease)
	} else {
		err = a.client.Update(ctx, lease)
	}
	if err != nil {
		return fmt.Errorf("nodeagent: renewing lease: %w", err)
	}
	return nil
}

// kubeVersion is the Kubernetes version of the API this agent was built against
// (k8s.io/api v0.X.Y ↔ Kubernetes v1.X.Y), shown as the node's kubelet version.
func kubeVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if v, ok := strings.CutPrefix(m.Version, "v0."); ok && m.Path == "k8s.io/api" {
				return "v1." + v
			}
		}
	}
	return "v1.0.0-unknown"
}
