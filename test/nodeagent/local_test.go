package nodeagent

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLocalize(t *testing.T) {
	ip := netip.MustParseAddr("127.3.7.5")
	mounts := []mount{
		{path: "/etc/rwh/signing", local: "/run/p/volumes/signing"},
		{path: "/etc/rwh", local: "/run/p/volumes/all"},
		{path: "/data/", local: "/run/p/volumes/data"},
	}
	for in, want := range map[string]string{
		"--listen=:8080":                          "--listen=127.3.7.5:8080",
		"--admin-listen=0.0.0.0:9090":             "--admin-listen=127.3.7.5:9090",
		"--x=[::]:81":                             "--x=127.3.7.5:81",
		":8080":                                   "127.3.7.5:8080",
		"--redis-url=redis://127.0.0.1:6379/0":    "--redis-url=redis://127.0.0.1:6379/0",
		"--sentinel=127.0.0.1:26379":              "--sentinel=127.0.0.1:26379", // a dial address stays
		"--port=:http":                            "--port=:http",
		"--secrets-dir=/etc/rwh/signing":          "--secrets-dir=/run/p/volumes/signing",
		"--sink-secret-file=/etc/rwh/signing/key": "--sink-secret-file=/run/p/volumes/signing/key",
		"--ca=/etc/rwh/redis-ca/ca.crt":           "--ca=/run/p/volumes/all/redis-ca/ca.crt",
		"/data/x":                                 "/run/p/volumes/data/x",
		"--other=/etc/rwhx":                       "--other=/etc/rwhx", // not under /etc/rwh
		"worker":                                  "worker",
		"-v=2":                                    "-v=2",
	} {
		if got := localize(in, ip, mounts); got != want {
			t.Errorf("localize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "POD": "p-1"}
	for in, want := range map[string]string{
		"--name=$(POD)":       "--name=p-1",
		"$(A)$(A)-$(MISSING)": "11-$(MISSING)",
		"$$(A) costs $$5":     "$(A) costs $5",
		"no refs":             "no refs",
		"$(unterminated":      "$(unterminated",
		"trailing $":          "trailing $",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIPPoolAndLoopbackTwin(t *testing.T) {
	pool := newIPPool(netip.MustParsePrefix("10.3.7.0/30")) // .2 is the only pod IP of a /30
	ip, err := pool.allocate(nil)
	if err != nil || ip != netip.MustParseAddr("10.3.7.2") {
		t.Fatalf("allocate = %v, %v; want 10.3.7.2", ip, err)
	}
	if _, err := pool.allocate(nil); err == nil {
		t.Fatal("a full pool allocated again")
	}
	pool.release(ip)
	if again, err := pool.allocate(nil); err != nil || again != ip {
		t.Fatalf("after release: %v, %v", again, err)
	}
	if got := LoopbackIP(ip); got != netip.MustParseAddr("127.3.7.2") {
		t.Errorf("LoopbackIP(%s) = %s", ip, got)
	}
	wide := newIPPool(netip.MustParsePrefix("10.3.0.0/22"))
	for _, want := range []string{"10.3.0.2", "10.3.0.3", "10.3.0.4"} {
		if ip, err := wide.allocate(nil); err != nil || ip.String() != want {
			t.Errorf("allocate = %v, %v; want %s", ip, err, want)
		}
	}
}

func TestPhase(t *testing.T) {
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	waiting := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
	backoff := corev1.ContainerStatus{
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}},
	}
	exited := func(code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
	}
	for name, c := range map[string]struct {
		in   []corev1.ContainerStatus
		want corev1.PodPhase
	}{
		"none":              {nil, corev1.PodPending},
		"creating":          {[]corev1.ContainerStatus{waiting}, corev1.PodPending},
		"running":           {[]corev1.ContainerStatus{running}, corev1.PodRunning},
		"restarting":        {[]corev1.ContainerStatus{backoff}, corev1.PodRunning},
		"one still starts":  {[]corev1.ContainerStatus{running, waiting}, corev1.PodPending},
		"all exited 0":      {[]corev1.ContainerStatus{exited(0), exited(0)}, corev1.PodSucceeded},
		"one failed":        {[]corev1.ContainerStatus{exited(0), exited(143)}, corev1.PodFailed},
		"one still running": {[]corev1.ContainerStatus{exited(1), running}, corev1.PodRunning},
	} {
		if got := phase(c.in); got != c.want {
			t.Errorf("%s: phase = %s, want %s", name, got, c.want)
		}
	}
}

func TestSetConditionKeepsTransitionTime(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	conds := []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)},
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(t0)},
	}
	later := t0.Add(time.Minute + 300*time.Millisecond)
	setCondition(&conds, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}, later)
	if !conds[1].LastTransitionTime.Equal(&metav1.Time{Time: t0}) || conds[1].Reason != "ContainersNotReady" {
		t.Errorf("unchanged status: %+v", conds[1])
	}
	setCondition(&conds, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}, later)
	if want := later.Truncate(time.Second); !conds[1].LastTransitionTime.Time.Equal(want) {
		t.Errorf("changed status: transition %v, want %v", conds[1].LastTransitionTime, want)
	}
	setCondition(&conds, corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}, later)
	if len(conds) != 3 || conds[0].Type != corev1.PodScheduled {
		t.Errorf("conditions %+v: the scheduler's must stay, the new one appended", conds)
	}
}
