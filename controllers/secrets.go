package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/redisconn"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// validSigningSecret is whether the receivers accept v as a signing secret: the one rule,
// signing.Parse, so that SecretResolved=True means they do.
func validSigningSecret(v []byte) bool {
	_, err := signing.Parse(v)
	return err == nil
}

// secretStore serves the values of the Secrets webhooks reference. The manager caches Secrets
// as metadata only, so unrelated Secrets (Helm releases, TLS certificates, …) cost no memory;
// values come from the API server. A value read is kept, with the Secret's resourceVersion,
// while a webhook still references it, and is used again while the metadata cache shows the
// same resourceVersion: steady-state reconciles read no Secret from the API server. Only the
// keys webhooks reference are kept.
type secretStore struct {
	meta client.Reader // the manager's cache: Secrets as PartialObjectMetadata
	api  client.Reader // uncached
	mu   sync.Mutex
	kept map[types.NamespacedName]*keptSecret
	// readBy is, per webhook, the Secrets its last reconcile read: an entry of kept goes with
	// its last reader.
	readBy map[types.NamespacedName][]types.NamespacedName
}

type keptSecret struct {
	uid     types.UID
	rv      string
	fetched map[string]bool // keys asked for when it was read (present in data or not)
	data    map[string][]byte
	users   map[types.NamespacedName]struct{}
}

func newSecretStore(meta, api client.Reader) *secretStore {
	return &secretStore{meta: meta, api: api, kept: map[types.NamespacedName]*keptSecret{}, readBy: map[types.NamespacedName][]types.NamespacedName{}}
}

var secretGVK = corev1.SchemeGroupVersion.WithKind("Secret")

// fetch returns the Secret (its wanted keys only; nil when it does not exist), from what is
// kept when the cached metadata shows the same object and resourceVersion, else from the API.
func (s *secretStore) fetch(ctx context.Context, key types.NamespacedName, want []string) (*corev1.Secret, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(secretGVK)
	if err := s.meta.Get(ctx, key, m); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	s.mu.Lock()
	k := s.kept[key]
	if k != nil && k.uid == m.UID && k.rv == m.ResourceVersion && allFetched(k.fetched, want) {
		defer s.mu.Unlock()
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: k.data}, nil
	}
	fetched := map[string]bool{}
	if k != nil && k.uid == m.UID { // keep asking for what other webhooks asked for
		maps.Copy(fetched, k.fetched)
	}
	s.mu.Unlock()
	for _, w := range want {
		fetched[w] = true
	}
	var sec corev1.Secret
	if err := s.api.Get(ctx, key, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	data := map[string][]byte{}
	for w := range fetched {
		if v, ok := sec.Data[w]; ok {
			data[w] = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	users := map[types.NamespacedName]struct{}{}
	if k := s.kept[key]; k != nil {
		users = k.users
	}
	s.kept[key] = &keptSecret{uid: sec.UID, rv: sec.ResourceVersion, fetched: fetched, data: data, users: users}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: data}, nil
}

func allFetched(fetched map[string]bool, want []string) bool {
	for _, w := range want {
		if !fetched[w] {
			return false
		}
	}
	return true
}

// setReadBy records that webhook's reconcile read exactly these Secrets; kept Secrets no webhook
// reads any more are dropped.
func (s *secretStore) setReadBy(webhook types.NamespacedName, read []types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, old := range s.readBy[webhook] {
		if !slices.Contains(read, old) {
			s.dropUserLocked(old, webhook)
		}
	}
	for _, key := range read {
		if k := s.kept[key]; k != nil {
			k.users[webhook] = struct{}{}
		}
	}
	if len(read) == 0 {
		delete(s.readBy, webhook)
	} else {
		s.readBy[webhook] = read
	}
}

func (s *secretStore) dropUserLocked(key, webhook types.NamespacedName) {
	if k := s.kept[key]; k != nil {
		delete(k.users, webhook)
		if len(k.users) == 0 {
			delete(s.kept, key)
		}
	}
}

// forget drops what only webhook kept.
func (s *secretStore) forget(webhook types.NamespacedName) { s.setReadBy(webhook, nil) }

// size is the number of Secrets kept (for tests).
func (s *secretStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.kept)
}

// secretReader reads one webhook's referenced Secrets for one reconcile, each at most once.
type secretReader struct {
	store   *secretStore
	webhook types.NamespacedName
	want    map[string][]string       // Secret name → keys the webhook references
	seen    map[string]*corev1.Secret // nil value: not found
}

func (s *secretStore) reader(rw *v1alpha1.ResendWebhook) *secretReader {
	return &secretReader{store: s, webhook: client.ObjectKeyFromObject(rw), want: referencedKeys(rw), seen: map[string]*corev1.Secret{}}
}

// done hands what this reconcile read back to the store.
func (s *secretReader) done() {
	var read []types.NamespacedName
	for name, sec := range s.seen {
		if sec != nil {
			read = append(read, types.NamespacedName{Namespace: s.webhook.Namespace, Name: name})
		}
	}
	s.store.setReadBy(s.webhook, read)
}

// redisDigest is render.RedisSecretsDigest of the referenced Redis password and CA values, or
// "" when the webhook references neither. A missing Secret or key counts as an empty value:
// its appearance then changes the digest and rolls the pods onto it.
func (s *secretReader) redisDigest(ctx context.Context, rw *v1alpha1.ResendWebhook) string {
	values, _ := s.redisSecrets(ctx, rw)
	if len(values) == 0 {
		return ""
	}
	return render.RedisSecretsDigest(values[render.SecretRedisPassword], values[render.SecretRedisCA])
}

// redisSecrets reads the Redis password and CA the webhook references, by role (a missing one
// as an empty value), and a condition for the first that cannot be read.
func (s *secretReader) redisSecrets(ctx context.Context, rw *v1alpha1.ResendWebhook) (map[render.SecretRole][]byte, *metav1.Condition) {
	values := map[render.SecretRole][]byte{}
	var firstBad *metav1.Condition
	for _, ref := range render.SecretRefs(rw) {
		if ref.Role != render.SecretRedisPassword && ref.Role != render.SecretRedisCA {
			continue
		}
		v, bad := s.value(ctx, ref.Ref(), string(ref.Role))
		values[ref.Role] = v
		if firstBad == nil {
			firstBad = bad
		}
	}
	return values, firstBad
}

func (s *secretReader) get(ctx context.Context, name string) (*corev1.Secret, error) {
	if sec, ok := s.seen[name]; ok {
		return sec, nil
	}
	sec, err := s.store.fetch(ctx, types.NamespacedName{Namespace: s.webhook.Namespace, Name: name}, s.want[name])
	if err != nil {
		return nil, err
	}
	s.seen[name] = sec
	return sec, nil
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
		default:
			if _, err := signing.Parse(v); err != nil {
				invalid = append(invalid, k+" ("+err.Error()+")")
			} else {
				valid = append(valid, k)
			}
		}
	}
	switch {
	case len(valid) == 0 && len(invalid) > 0:
		return *falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonInvalidSecret,
			fmt.Sprintf("signing Secret %q: keys %s do not hold a whsec_ base64 secret", name, strings.Join(invalid, ", ")))
	case len(valid) == 0:
		return *falseCond(v1alpha1.ConditionSecretResolved, v1alpha1.ReasonKeyMissing,
			fmt.Sprintf("signing Secret %q has none of the keys %s", name, strings.Join(missing, ",")))
	}
	msg := fmt.Sprintf("signing Secret %q: valid keys %s", name, strings.Join(valid, ","))
	if len(missing) > 0 {
		msg += "; absent keys " + strings.Join(missing, ",")
	}
	if len(invalid) > 0 {
		msg += "; invalid keys " + strings.Join(invalid, ", ")
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
	for _, ref := range render.SecretRefs(rw) {
		if !ref.Required() {
			continue
		}
		if _, bad := s.value(ctx, ref.Ref(), string(ref.Role)); bad != nil {
			return *bad
		}
	}
	return cond
}

// referencedKeys maps the name of every Secret the webhook reads or mounts to the keys it uses.
// The API key's Secret is among them so that fixing the key retries a rejected sync at once.
func referencedKeys(rw *v1alpha1.ResendWebhook) map[string][]string {
	keys := map[string][]string{}
	for _, ref := range render.SecretRefs(rw) {
		keys[ref.Name] = append(keys[ref.Name], ref.Keys...)
	}
	return keys
}

// redisConfig builds the connection settings from the spec and the referenced Secrets.
func (s *secretReader) redisConfig(ctx context.Context, rw *v1alpha1.ResendWebhook) (redisconn.Config, *metav1.Condition) {
	red := rw.Spec.Queue.Redis
	cfg := redisconn.Config{URL: red.URL}
	if red.Sentinel != nil {
		cfg.SentinelMaster, cfg.SentinelAddrs = red.Sentinel.MasterName, red.Sentinel.Addrs
	}
	if red.Cluster != nil {
		cfg.ClusterAddrs = red.Cluster.Addrs
	}
	if red.TLS != nil {
		cfg.InsecureSkipVerify = red.TLS.InsecureSkipVerify
	}
	values, bad := s.redisSecrets(ctx, rw)
	if bad != nil {
		return cfg, bad
	}
	cfg.Password = strings.TrimRight(string(values[render.SecretRedisPassword]), "\r\n")
	cfg.CAPEM = values[render.SecretRedisCA]
	return cfg, nil
}

func falseCond(typ, reason, msg string) *metav1.Condition {
	return &metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
}
