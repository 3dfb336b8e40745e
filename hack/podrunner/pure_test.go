package podrunner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestRewriterArgs(t *testing.T) {
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
		{Name: "webhook", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090},
	}}}}
	next := 40000
	alloc := func() (int, error) { next++; return next, nil }
	ports, err := NewPortMap(spec, alloc)
	if err != nil {
		t.Fatal(err)
	}
	rw := &Rewriter{Ports: &ports, Alloc: alloc, Mounts: []Mount{
		{MountPath: "/etc/rwh/signing", LocalPath: "/tmp/pod/volumes/signing"},
		{MountPath: "/etc/rwh/redis", LocalPath: "/tmp/pod/volumes/redis"},
		{MountPath: "/etc/rwh/redis/nested", LocalPath: "/tmp/pod/volumes/nested"},
	}}
	got, err := rw.Args([]string{
		"receiver",
		"--listen=:8080",
		"--admin-listen=0.0.0.0:9090",
		"--secrets-dir=/etc/rwh/signing",
		"--redis-password-file=/etc/rwh/redis/password",
		"--other-file=/etc/rwh/redis/nested/x",
		"--not-a-mount=/etc/rwh/signingx",
		"--redis-url=redis://127.0.0.1:6379/0",
		"--redis-sentinel-addrs=sentinel.example:26379",
		"--debug-listen=:7000",
		"--events=email.sent,email.bounced",
		":8080",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"receiver",
		"--listen=127.0.0.1:40001",
		"--admin-listen=127.0.0.1:40002",
		"--secrets-dir=/tmp/pod/volumes/signing",
		"--redis-password-file=/tmp/pod/volumes/redis/password",
		"--other-file=/tmp/pod/volumes/nested/x",
		"--not-a-mount=/etc/rwh/signingx",
		"--redis-url=redis://127.0.0.1:6379/0",
		"--redis-sentinel-addrs=sentinel.example:26379",
		"--debug-listen=127.0.0.1:40003",
		"--events=email.sent,email.bounced",
		"127.0.0.1:40001",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rewritten args:\n got %q\nwant %q", got, want)
	}
	if p, ok := ports.Lookup("admin"); !ok || p != 40002 {
		t.Errorf("Lookup(admin) = %d, %v", p, ok)
	}
	if p, ok := ports.Lookup("7000"); !ok || p != 40003 {
		t.Errorf("an undeclared listen port is remembered for probes: Lookup(7000) = %d, %v", p, ok)
	}
}

func TestExpandVars(t *testing.T) {
	env := map[string]string{"POD": "p-1", "PORT": "8080"}
	for in, want := range map[string]string{
		"--name=$(POD)":        "--name=p-1",
		"$(POD):$(PORT)":       "p-1:8080",
		"$(MISSING)":           "$(MISSING)",
		"$$(POD) stays quoted": "$(POD) stays quoted",
	} {
		if got := ExpandVars(in, env); got != want {
			t.Errorf("ExpandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

// mapSource serves Secrets and ConfigMaps from maps (a pure-function input, not an apiserver).
type mapSource struct {
	secrets map[string]map[string][]byte
	cms     map[string]map[string]string
}

func (m mapSource) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	d, ok := m.secrets[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: d}, nil
}

func (m mapSource) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	d, ok := m.cms[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: d}, nil
}

func TestVolumeFiles(t *testing.T) {
	src := mapSource{
		secrets: map[string]map[string][]byte{"signing": {"current": []byte("whsec_a"), "unrelated": []byte("x")}},
		cms:     map[string]map[string]string{"conf": {"a.yaml": "a: 1"}},
	}
	ctx := context.Background()
	projected := corev1.Volume{Name: "signing", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "signing"}, Optional: new(true),
			Items: []corev1.KeyToPath{{Key: "current", Path: "current"}, {Key: "next", Path: "next"}}}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}},
		{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: new(true)}},
	}}}}
	files, err := VolumeFiles(ctx, src, "ns", projected)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Files{"current": []byte("whsec_a"), "a.yaml": []byte("a: 1")}); !files.Equal(want) {
		t.Errorf("projected files = %q, want %q (optional key and optional Secret skipped, unlisted key left out)", files, want)
	}

	required := corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "signing",
		Items: []corev1.KeyToPath{{Key: "next", Path: "next"}}}}}
	if _, err := VolumeFiles(ctx, src, "ns", required); err == nil || !strings.Contains(err.Error(), `no key "next"`) {
		t.Errorf("missing non-optional key: err = %v", err)
	}
	missing := corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent"}}}
	if _, err := VolumeFiles(ctx, src, "ns", missing); !apierrors.IsNotFound(errors.Unwrap(err)) {
		t.Errorf("missing non-optional Secret: err = %v, want a not-found error", err)
	}
	escape := corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "signing",
		Items: []corev1.KeyToPath{{Key: "current", Path: "../evil"}}}}}
	if _, err := VolumeFiles(ctx, src, "ns", escape); err == nil {
		t.Error("an item path leaving the volume must be rejected")
	}
	hostPath := corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}
	if _, err := VolumeFiles(ctx, src, "ns", hostPath); !errors.Is(err, ErrUnsupportedVolume) {
		t.Errorf("hostPath: err = %v, want ErrUnsupportedVolume", err)
	}
}

func TestAtomicDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	a := &AtomicDir{Dir: dir}
	changed, err := a.Write(Files{"current": []byte("one"), "sub/x": []byte("x")})
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if read("current") != "one" || read("sub/x") != "x" {
		t.Fatalf("after first write: current=%q sub/x=%q", read("current"), read("sub/x"))
	}
	if target, err := os.Readlink(filepath.Join(dir, "current")); err != nil || target != "..data/current" {
		t.Errorf("visible names are symlinks through ..data like the kubelet's: %q, %v", target, err)
	}
	firstData, _ := os.Readlink(filepath.Join(dir, "..data"))

	if changed, _ := a.Write(Files{"current": []byte("one"), "sub/x": []byte("x")}); changed {
		t.Error("writing the same files again must not swap the directory")
	}
	if _, err := a.Write(Files{"current": []byte("two"), "next": []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if read("current") != "two" || read("next") != "new" {
		t.Errorf("after update: current=%q next=%q", read("current"), read("next"))
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Errorf("a removed key must disappear: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, firstData)); !os.IsNotExist(err) {
		t.Errorf("the previous timestamped directory must be removed: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 4 { // ..<ts>, ..data, current, next
		t.Errorf("directory holds %q", names)
	}
}

func TestMatch(t *testing.T) {
	prefix, exact := networkingv1.PathTypePrefix, networkingv1.PathTypeExact
	backend := func(name string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}}}
	}
	rule := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
	}
	path := func(p string, pt networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
		return networkingv1.HTTPIngressPath{Path: p, PathType: &pt, Backend: backend(svc)}
	}
	def := backend("default")
	ings := []networkingv1.Ingress{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "hooks"}, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("hooks.example.com", path("/", prefix, "root"), path("/resend", prefix, "resend"), path("/resend/exact", exact, "exact")),
			rule("*.example.com", path("/", prefix, "wild")),
		}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "any"}, Spec: networkingv1.IngressSpec{DefaultBackend: &def, Rules: []networkingv1.IngressRule{
			rule("", path("/any", prefix, "anyhost")),
		}}},
	}
	routes := Routes(ings)
	for _, tc := range []struct{ host, path, want string }{
		{"hooks.example.com", "/", "root"},
		{"hooks.example.com:8080", "/resend", "resend"},
		{"HOOKS.example.com", "/resend/x", "resend"},
		{"hooks.example.com", "/resendx", "root"}, // prefix matches whole path elements
		{"hooks.example.com", "/resend/exact", "exact"},
		{"hooks.example.com", "/resend/exact/", "resend"},
		{"other.example.com", "/anything", "wild"},
		{"a.b.example.com", "/", "default"}, // a wildcard covers one label only
		{"example.com", "/any/thing", "anyhost"},
		{"127.0.0.1:8080", "/", "default"},
	} {
		r, ok := Match(routes, tc.host, tc.path)
		got := "<none>"
		if ok {
			got = r.Backend.Name
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q) = %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
	if _, ok := Match(Routes(ings[:1]), "unknown.org", "/"); ok {
		t.Error("no rule and no default backend must not match")
	}
}
