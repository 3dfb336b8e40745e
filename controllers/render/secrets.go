package render

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// SecretRole says what a referenced Secret is for.
type SecretRole string

// The roles, in the order SecretRefs lists them. The values read well in messages.
const (
	// SecretSigning: the keys of spec.signingSecret (with spec.resend also the previous
	// secret's key), mounted as the receivers' signing directory; optional, a key may be
	// absent mid-rotation.
	SecretSigning SecretRole = "signing"
	// SecretRedisPassword and SecretRedisCA are mounted into receivers and workers.
	SecretRedisPassword SecretRole = "Redis password"
	SecretRedisCA       SecretRole = "Redis CA"
	// SecretSink is the key the worker signs its deliveries with.
	SecretSink SecretRole = "sink signing"
	// SecretResendAPIKey is read by the operator only, never mounted.
	SecretResendAPIKey SecretRole = "Resend API key"
)

// SecretRef is a Secret a webhook references and the keys of it that are used.
type SecretRef struct {
	Role SecretRole
	Name string
	Keys []string // exactly one for every role but SecretSigning
}

// Required is whether a pod cannot start without the key: the kubelet waits for the required
// Secret volumes (Redis password and CA, sink secret).
func (r SecretRef) Required() bool {
	return r.Role == SecretRedisPassword || r.Role == SecretRedisCA || r.Role == SecretSink
}

// Ref is the single key of a required or API-key reference.
func (r SecretRef) Ref() v1alpha1.SecretKeyRef {
	return v1alpha1.SecretKeyRef{Name: r.Name, Key: r.Keys[0]}
}

// SecretRefs is the one list of the Secrets a webhook references. Everything else derives from
// it: the controller's watch and index, the keys it reads and checks (SecretResolved), the
// Redis digest that rolls pods, and the volumes the Deployments mount.
func SecretRefs(rw *v1alpha1.ResendWebhook) []SecretRef {
	rw = defaulted(rw)
	s := rw.Spec
	keys := rw.SigningSecretKeys()
	if s.Resend != nil && !slices.Contains(keys, PreviousSigningKey(keys[0])) {
		// With spec.resend the operator keeps the secret a rotation replaced under this key
		// for Resend's dual-signing window.
		keys = append(slices.Clip(keys), PreviousSigningKey(keys[0]))
	}
	refs := []SecretRef{{Role: SecretSigning, Name: s.SigningSecret.Name, Keys: keys}}
	single := func(role SecretRole, ref v1alpha1.SecretKeyRef) {
		refs = append(refs, SecretRef{Role: role, Name: ref.Name, Keys: []string{ref.Key}})
	}
	if p := s.Queue.Redis.PasswordSecretRef; p != nil {
		single(SecretRedisPassword, *p)
	}
	if t := s.Queue.Redis.TLS; t != nil && t.CASecretRef != nil {
		single(SecretRedisCA, *t.CASecretRef)
	}
	if w := s.Worker; w != nil && w.Sink != nil && w.Sink.SigningSecretRef != nil {
		single(SecretSink, *w.Sink.SigningSecretRef)
	}
	if r := s.Resend; r != nil {
		single(SecretResendAPIKey, v1alpha1.SecretKeyRef{Name: r.APIKeySecretRef.Name, Key: r.APIKeySecretRef.Key})
	}
	return refs
}

// secretMount is where a component finds a referenced Secret.
type secretMount struct {
	volume, dir, file string
	components        []string
}

var secretMounts = map[SecretRole]secretMount{
	SecretSigning:       {volSigning, SigningDir, "", []string{ComponentReceiver}},
	SecretRedisPassword: {volRedis, RedisDir, RedisPassFile, []string{ComponentReceiver, ComponentWorker}},
	SecretRedisCA:       {volRedisCA, RedisCADir, RedisCAFile, []string{ComponentReceiver, ComponentWorker}},
	SecretSink:          {volSink, SinkDir, SinkFile, []string{ComponentWorker}},
}

// secretVolumes are the volumes and mounts of the Secrets a component uses, in SecretRefs'
// order. The signing keys are projected as files of their own names into one optional volume
// (the receiver rescans the directory); every other key is one required file.
func secretVolumes(rw *v1alpha1.ResendWebhook, component string) ([]corev1.Volume, []corev1.VolumeMount) {
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	for _, ref := range SecretRefs(rw) {
		m, ok := secretMounts[ref.Role]
		if !ok || !slices.Contains(m.components, component) {
			continue
		}
		vol := corev1.Volume{Name: m.volume}
		if ref.Role == SecretSigning {
			items := make([]corev1.KeyToPath, len(ref.Keys))
			for i, k := range ref.Keys {
				items[i] = corev1.KeyToPath{Key: k, Path: k}
			}
			vol.Projected = &corev1.ProjectedVolumeSource{
				DefaultMode: new(int32(secretFileMode)),
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name},
					Items:                items,
					Optional:             new(true),
				}}},
			}
		} else {
			vol.Secret = &corev1.SecretVolumeSource{
				SecretName:  ref.Name,
				Items:       []corev1.KeyToPath{{Key: ref.Keys[0], Path: m.file}},
				DefaultMode: new(int32(secretFileMode)),
			}
		}
		vols = append(vols, vol)
		mounts = append(mounts, corev1.VolumeMount{Name: m.volume, MountPath: m.dir, ReadOnly: true})
	}
	return vols, mounts
}
