package render

import (
	"maps"
	"path"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// Grace periods, above the binaries' own shutdown budgets so the kubelet never kills them
// mid-drain: the receiver keeps answering for 5 s (--shutdown-delay) while endpoints drop it,
// then gives in-flight requests 15 s (--shutdown-grace); the worker lets attempts finish for
// 25 s (--shutdown-grace) before handing them back to Redis.
const (
	receiverGraceSeconds = 30
	workerGraceSeconds   = 40
)

const (
	volSigning = "signing-secrets"
	volRedis   = "redis-password"
	volRedisCA = "redis-ca"
	volSink    = "sink-secret"

	// secretFileMode lets only the owner and the pod's fsGroup read mounted secrets.
	secretFileMode = 0o440
)

// ReceiverDeployment runs the receivers. Replicas are left to the HPA when autoscaling is set.
func ReceiverDeployment(rw *v1alpha1.ResendWebhook, o Options) *appsv1.Deployment {
	rw = defaulted(rw)
	r := rw.Spec.Receiver
	container := baseContainer(ComponentReceiver, image(r.Image, o), ReceiverArgs(rw), r.Resources)
	container.Ports = []corev1.ContainerPort{
		{Name: PortWebhook, ContainerPort: WebhookPort, Protocol: corev1.ProtocolTCP},
		{Name: PortAdmin, ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
	}
	volumes, mounts := secretVolumes(rw, ComponentReceiver)
	container.VolumeMounts = mounts

	d := deployment(rw, ReceiverName(rw), ComponentReceiver, r.PodSettings, container, volumes, receiverGraceSeconds)
	if r.Autoscaling == nil {
		d.Spec.Replicas = new(*r.Replicas)
	}
	// Never drop below the wanted capacity during a rollout: Resend retries slowly.
	d.Spec.Strategy = appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: new(intstr.FromInt32(0)),
			MaxSurge:       new(intstr.FromInt32(1)),
		},
	}
	d.Spec.Template = withConfigHash(d.Spec.Template, o)
	return d
}

// WorkerDeployment runs the workers; nil without spec.worker. Replicas are left to KEDA when
// spec.worker.autoscaling can act (Options.KEDA).
func WorkerDeployment(rw *v1alpha1.ResendWebhook, o Options) *appsv1.Deployment {
	rw = defaulted(rw)
	w := rw.Spec.Worker
	if w == nil {
		return nil
	}
	container := baseContainer(ComponentWorker, image(w.Image, o), WorkerArgs(rw), w.Resources)
	container.Ports = []corev1.ContainerPort{{Name: PortAdmin, ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP}}
	volumes, mounts := secretVolumes(rw, ComponentWorker)
	// The user's additions come after ours; on a clash ours win (the CRD rejects the clashes it
	// can see; this also covers objects stored before those rules).
	volumes = appendVolumes(volumes, w.Volumes)
	container.VolumeMounts = appendMounts(mounts, w.VolumeMounts)
	container.Env = slices.Clone(w.Env)
	container.EnvFrom = slices.Clone(w.EnvFrom)

	d := deployment(rw, WorkerName(rw), ComponentWorker, w.PodSettings, container, volumes, workerGraceSeconds)
	if a, _ := workerAutoscaling(rw, o); a == nil { // else KEDA's HPA sets them
		d.Spec.Replicas = new(*w.Replicas)
	}
	d.Spec.Strategy = appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: new(intstr.FromString("25%")),
			MaxSurge:       new(intstr.FromString("25%")),
		},
	}
	d.Spec.Template = withConfigHash(d.Spec.Template, o)
	return d
}

func image(override string, o Options) string {
	if override != "" {
		return override
	}
	return o.Image
}

// deployment is what both components' Deployments share. The spec's pod settings fill in what
// the operator leaves open; where they clash with the operator's labels, annotations, volumes or
// security settings, the operator's win.
func deployment(rw *v1alpha1.ResendWebhook, name, component string, ps v1alpha1.PodSettings,
	c corev1.Container, volumes []corev1.Volume, graceSeconds int64) *appsv1.Deployment {
	selector := SelectorLabels(rw, component)
	podMeta := metav1.ObjectMeta{Labels: Labels(rw, component)}
	if m := ps.PodMetadata; m != nil {
		podMeta.Labels = mergeOurs(m.Labels, podMeta.Labels)
		podMeta.Annotations = maps.Clone(m.Annotations)
		// The operator's own annotations are set by withConfigHash alone.
		delete(podMeta.Annotations, ConfigHashAnnotation)
		delete(podMeta.Annotations, RedisSecretsAnnotation)
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(rw, name, component),
		Spec: appsv1.DeploymentSpec{
			Selector:             &metav1.LabelSelector{MatchLabels: selector},
			RevisionHistoryLimit: new(int32(5)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: podMeta,
				Spec: corev1.PodSpec{
					Containers:         []corev1.Container{c},
					Volumes:            volumes,
					SecurityContext:    podSecurityContext(),
					ServiceAccountName: ps.ServiceAccountName,
					// Off unless asked for: the operator's own receivers and workers never
					// talk to the API.
					AutomountServiceAccountToken:  new(ps.AutomountServiceAccountToken != nil && *ps.AutomountServiceAccountToken),
					ImagePullSecrets:              slices.Clone(ps.ImagePullSecrets),
					PriorityClassName:             ps.PriorityClassName,
					EnableServiceLinks:            new(false),
					TerminationGracePeriodSeconds: new(graceSeconds),
					NodeSelector:                  ps.NodeSelector,
					Tolerations:                   ps.Tolerations,
					Affinity:                      ps.Affinity,
					TopologySpreadConstraints:     spread(ps.TopologySpreadConstraints, selector),
				},
			},
		},
	}
}

// spread is the spec's topology spread constraints (one without a label selector selects this
// component's pods), by default: spread over nodes, best effort.
func spread(spec []corev1.TopologySpreadConstraint, selector map[string]string) []corev1.TopologySpreadConstraint {
	if len(spec) == 0 {
		return []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       corev1.LabelHostname,
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: selector},
		}}
	}
	out := make([]corev1.TopologySpreadConstraint, len(spec))
	for i, c := range spec {
		out[i] = *c.DeepCopy()
		if out[i].LabelSelector == nil {
			out[i].LabelSelector = &metav1.LabelSelector{MatchLabels: maps.Clone(selector)}
		}
	}
	return out
}

// mergeOurs is extra with ours laid over it: on a shared key our value wins.
func mergeOurs(extra, ours map[string]string) map[string]string {
	out := maps.Clone(extra)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, ours)
	return out
}

// appendVolumes adds the user's volumes whose names the operator's do not take.
func appendVolumes(ours, theirs []corev1.Volume) []corev1.Volume {
	for _, v := range theirs {
		if !slices.ContainsFunc(ours, func(o corev1.Volume) bool { return o.Name == v.Name }) {
			ours = append(ours, *v.DeepCopy())
		}
	}
	return ours
}

// appendMounts adds the user's mounts, except those at or below the directory of the
// operator's secrets.
func appendMounts(ours, theirs []corev1.VolumeMount) []corev1.VolumeMount {
	for _, m := range theirs {
		if p := path.Clean(m.MountPath); p == SecretsRoot || strings.HasPrefix(p, SecretsRoot+"/") {
			continue
		}
		ours = append(ours, *m.DeepCopy())
	}
	return ours
}

// baseContainer has the security context, probes and resources every component gets.
func baseContainer(name, img string, args []string, res *corev1.ResourceRequirements) corev1.Container {
	return corev1.Container{
		Name:                     name,
		Image:                    img,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		Args:                     args,
		Resources:                resources(res),
		SecurityContext:          containerSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		LivenessProbe:            probe("/healthz", 3),
		ReadinessProbe:           probe("/readyz", 1),
	}
}

func probe(path string, failureThreshold int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString(PortAdmin), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    5,
		TimeoutSeconds:   2,
		FailureThreshold: failureThreshold,
	}
}

// resources are the spec's, with modest default requests so the scheduler can place pods
// sensibly. A partial spec keeps its values and gets the default request for each resource
// it leaves out, unless it sets a limit for it (Kubernetes then defaults the request to the
// limit, and a larger default request would be invalid). Without a spec, a default memory
// limit applies too.
func resources(spec *corev1.ResourceRequirements) corev1.ResourceRequirements {
	defaultRequests := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("64Mi"),
	}
	if spec == nil || (len(spec.Requests) == 0 && len(spec.Limits) == 0) {
		return corev1.ResourceRequirements{
			Requests: defaultRequests,
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		}
	}
	out := *spec.DeepCopy()
	for name, q := range defaultRequests {
		_, requested := out.Requests[name]
		_, limited := out.Limits[name]
		if requested || limited {
			continue
		}
		if out.Requests == nil {
			out.Requests = corev1.ResourceList{}
		}
		out.Requests[name] = q
	}
	return out
}

// podSecurityContext satisfies the "restricted" Pod Security Standard.
func podSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   new(true),
		RunAsUser:      new(int64(NonRootUID)),
		RunAsGroup:     new(int64(NonRootUID)),
		FSGroup:        new(int64(NonRootUID)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             new(true),
		RunAsUser:                new(int64(NonRootUID)),
		ReadOnlyRootFilesystem:   new(true),
		AllowPrivilegeEscalation: new(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}
