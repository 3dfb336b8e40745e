package render_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
)

// Where the user's pod settings clash with what the operator relies on, the operator's win.
func TestPodSettingsNeverOverrideTheOperators(t *testing.T) {
	rw := Full()
	w := rw.Spec.Worker
	w.PodMetadata = &v1alpha1.PodMetadata{
		Labels: map[string]string{render.LabelComponent: "receiver", render.LabelManagedBy: "me", "team": "mail"},
		Annotations: map[string]string{
			render.ConfigHashAnnotation:   "forged",
			render.RedisSecretsAnnotation: "forged",
			"team":                        "mail",
		},
	}
	// Clashes the CRD rejects, as stored before those rules existed.
	w.Volumes = append(w.Volumes, corev1.Volume{Name: "sink-secret", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	w.VolumeMounts = append(w.VolumeMounts,
		corev1.VolumeMount{Name: "scratch", MountPath: "/etc/rwh"},
		corev1.VolumeMount{Name: "scratch", MountPath: "/etc/rwh/sink/../redis"},
		corev1.VolumeMount{Name: "scratch", MountPath: "/etc/rwhx"})
	d := render.WorkerDeployment(rw, opts)
	tpl := d.Spec.Template

	if got := tpl.Labels[render.LabelComponent]; got != render.ComponentWorker {
		t.Errorf("component label %q, want %q", got, render.ComponentWorker)
	}
	if got := tpl.Labels[render.LabelManagedBy]; got != render.ManagerName {
		t.Errorf("managed-by label %q", got)
	}
	if tpl.Labels["team"] != "mail" || tpl.Annotations["team"] != "mail" {
		t.Errorf("user label/annotation lost: %v %v", tpl.Labels, tpl.Annotations)
	}
	if tpl.Annotations[render.ConfigHashAnnotation] == "forged" || tpl.Annotations[render.RedisSecretsAnnotation] == "forged" {
		t.Errorf("user annotations replaced the operator's: %v", tpl.Annotations)
	}
	var sinkVolumes int
	for _, v := range tpl.Spec.Volumes {
		if v.Name == "sink-secret" {
			sinkVolumes++
			if v.Secret == nil {
				t.Errorf("the user's sink-secret volume replaced the operator's: %+v", v)
			}
		}
	}
	if sinkVolumes != 1 {
		t.Errorf("%d volumes named sink-secret", sinkVolumes)
	}
	var paths []string
	for _, m := range tpl.Spec.Containers[0].VolumeMounts {
		paths = append(paths, m.MountPath)
	}
	for _, bad := range []string{"/etc/rwh", "/etc/rwh/sink/../redis"} {
		if slices.Contains(paths, bad) {
			t.Errorf("user mount %s under the secrets directory kept: %v", bad, paths)
		}
	}
	if !slices.Contains(paths, "/etc/rwhx") || !slices.Contains(paths, "/tmp") {
		t.Errorf("legitimate user mounts dropped: %v", paths)
	}
	// Security context, probes and args stay the operator's whatever the pod settings say.
	c := tpl.Spec.Containers[0]
	if c.SecurityContext == nil || !*c.SecurityContext.ReadOnlyRootFilesystem || c.ReadinessProbe == nil || c.Args[0] != "worker" {
		t.Errorf("container lost the operator's settings: %+v", c)
	}
}

func TestTopologySpreadDefaultsAndSelector(t *testing.T) {
	rw := Minimal()
	d := render.ReceiverDeployment(rw, opts)
	tsc := d.Spec.Template.Spec.TopologySpreadConstraints
	if len(tsc) != 1 || tsc[0].TopologyKey != corev1.LabelHostname || tsc[0].WhenUnsatisfiable != corev1.ScheduleAnyway {
		t.Fatalf("default constraint %+v", tsc)
	}
	rw.Spec.Receiver.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
		{MaxSkew: 2, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule},
	}
	tsc = render.ReceiverDeployment(rw, opts).Spec.Template.Spec.TopologySpreadConstraints
	if len(tsc) != 1 || tsc[0].TopologyKey != corev1.LabelTopologyZone || tsc[0].LabelSelector == nil ||
		tsc[0].LabelSelector.MatchLabels[render.LabelComponent] != render.ComponentReceiver {
		t.Fatalf("spec constraint not used or without this component's selector: %+v", tsc)
	}
	if rw.Spec.Receiver.TopologySpreadConstraints[0].LabelSelector != nil {
		t.Fatal("rendering changed the spec's constraint")
	}
	if got := render.ReceiverDeployment(rw, opts).Spec.Template.Spec.AutomountServiceAccountToken; got == nil || *got {
		t.Fatalf("automountServiceAccountToken %v, want false by default", got)
	}
}
