package controllers

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
)

// ValidSigningSecret reports whether v looks like a Svix signing secret: "whsec_" followed by
// non-empty standard base64.
func ValidSigningSecret(v []byte) bool {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(v)), "whsec_")
	if !ok || s == "" {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) > 0
}

// secretReader reads referenced Secrets from the cache, remembering each one per reconcile.
type secretReader struct {
	c         client.Reader
	namespace string
	seen      map[string]*corev1.Secret // nil value: not found
}

func newSecretReader(c client.Reader, namespace string) *secretReader {
	return &secretReader{c: c, namespace: namespace, seen: map[string]*corev1.Secret{}}
}

// redisDigest is render.RedisSecretsDigest of the referenced Redis password and CA values, or
// "" when the webhook references neither. A missing Secret or key counts as an empty value:
// its appearance then changes the digest and rolls the pods onto it.
func (s *secretReader) redisDigest(ctx context.Context, rw *v1alpha1.ResendWebhook) string {
	red := rw.Spec.Queue.Redis
	var password, ca []byte
	var referenced bool
	if red.PasswordSecretRef != nil {
		password, _ = s.value(ctx, *red.PasswordSecretRef, "Redis password")
		referenced = true
	}
	if red.TLS != nil && red.TLS.CASecretRef != nil {
		ca, _ = s.value(ctx, *red.TLS.CASecretRef, "Redis CA")
		referenced = true
	}
	if !referenced {
		return ""
	}
	return render.RedisSecretsDigest(password, ca)
}

func (s *secretReader) get(ctx context.Context, name string) (*corev1.Secret, error) {
	if sec, ok := s.seen[name]; ok {
		return sec, nil
	}
	var sec corev1.Secret
	err := s.c.Get(ctx, types.NamespacedName{Namespace: s.namespace, Name: name}, &sec)
	switch {
	case apierrors.IsNotFound(err):
		s.seen[name] = nil
		return nil, nil
	case err != nil:
		return nil, err
	}
	s.seen[name] = &sec
	return &sec, nil
}

// value returns one key of a Secret, or a condition explaining why it cannot.
func (s *secretReader) value(ctx context.Context, ref v1alpha1.SecretKeyRef, what string) ([]byte, *metav1.Condition) {
	sec, err := s.get(ctx, ref.Name)
	if err != nil {
		return nil, falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonSecretNotFound, fmt.Sprintf("reading %s Secret %q: %v", what, ref.Name, err))
	}
	if sec == nil {
		return nil, falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonSecretNotFound, fmt.Sprintf("%s Secret %q not found", what, ref.Name))
	}
	v, ok := sec.Data[ref.Key]
	if !ok || len(v) == 0 {
		return nil, falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonKeyMissing, fmt.Sprintf("%s Secret %q has no key %q", what, ref.Name, ref.Key))
	}
	return v, nil
}

// checkSigningSecret is True when at least one listed key holds a valid signing secret: during
// a rotation a key may be absent for a while, so absent keys are only mentioned.
func (s *secretReader) checkSigningSecret(ctx context.Context, rw *v1alpha1.ResendWebhook) metav1.Condition {
	name := rw.Spec.SigningSecret.Name
	sec, err := s.get(ctx, name)
	if err != nil {
		return *falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonSecretNotFound, fmt.Sprintf("reading signing Secret %q: %v", name, err))
	}
	if sec == nil {
		return *falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonSecretNotFound, fmt.Sprintf("signing Secret %q not found", name))
	}
	var valid, missing, invalid []string
	for _, k := range rw.SigningSecretKeys() {
		v, ok := sec.Data[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case ValidSigningSecret(v):
			valid = append(valid, k)
		default:
			invalid = append(invalid, k)
		}
	}
	switch {
	case len(valid) == 0 && len(invalid) > 0:
		return *falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonInvalidSecret,
			fmt.Sprintf("signing Secret %q: keys %s do not hold a whsec_ base64 secret", name, strings.Join(invalid, ",")))
	case len(valid) == 0:
		return *falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonKeyMissing,
			fmt.Sprintf("signing Secret %q has none of the keys %s", name, strings.Join(missing, ",")))
	}
	msg := fmt.Sprintf("signing Secret %q: valid keys %s", name, strings.Join(valid, ","))
	if len(missing) > 0 {
		msg += "; absent keys " + strings.Join(missing, ",")
	}
	if len(invalid) > 0 {
		msg += "; invalid keys " + strings.Join(invalid, ",")
	}
	return metav1.Condition{Type: v1alpha1.ConditionSecretResolved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretsResolved, Message: msg}
}

// checkSecrets checks the signing secret, then every other referenced Secret key (Redis
// password and CA, sink secret): a missing one keeps pods from starting.
func (s *secretReader) checkSecrets(ctx context.Context, rw *v1alpha1.ResendWebhook) metav1.Condition {
	cond := s.checkSigningSecret(ctx, rw)
	if cond.Status != metav1.ConditionTrue {
		return cond
	}
	for _, ref := range otherSecretRefs(rw) {
		if _, bad := s.value(ctx, ref.SecretKeyRef, ref.what); bad != nil {
			return *bad
		}
	}
	return cond
}

type namedRef struct {
	what string
	v1alpha1.SecretKeyRef
}

// otherSecretRefs are the referenced single keys besides the signing secret, in a fixed order.
func otherSecretRefs(rw *v1alpha1.ResendWebhook) []namedRef {
	var refs []namedRef
	red := rw.Spec.Queue.Redis
	if red.PasswordSecretRef != nil {
		refs = append(refs, namedRef{"Redis password", *red.PasswordSecretRef})
	}
	if red.TLS != nil && red.TLS.CASecretRef != nil {
		refs = append(refs, namedRef{"Redis CA", *red.TLS.CASecretRef})
	}
	if w := rw.Spec.Worker; w != nil && w.Sink != nil && w.Sink.SigningSecretRef != nil {
		refs = append(refs, namedRef{"sink signing", *w.Sink.SigningSecretRef})
	}
	return refs
}

// redisConfig builds the connection settings from the spec and the referenced Secrets.
func (s *secretReader) redisConfig(ctx context.Context, rw *v1alpha1.ResendWebhook) (redisconn.Config, *metav1.Condition) {
	red := rw.Spec.Queue.Redis
	cfg := redisconn.Config{URL: red.URL}
	if red.Sentinel != nil {
		cfg.SentinelMaster, cfg.SentinelAddrs = red.Sentinel.MasterName, red.Sentinel.Addrs
	}
	if red.PasswordSecretRef != nil {
		v, bad := s.value(ctx, *red.PasswordSecretRef, "Redis password")
		if bad != nil {
			return cfg, bad
		}
		cfg.Password = strings.TrimRight(string(v), "\r\n")
	}
	if red.TLS != nil {
		cfg.InsecureSkipVerify = red.TLS.InsecureSkipVerify
		if red.TLS.CASecretRef != nil {
			v, bad := s.value(ctx, *red.TLS.CASecretRef, "Redis CA")
			if bad != nil {
				return cfg, bad
			}
			cfg.CAPEM = v
		}
	}
	return cfg, nil
}

func falseCond(typ, reason, msg string) *metav1.Condition {
	return &metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
}
