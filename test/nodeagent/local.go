package nodeagent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// mount is a volume mount of a container: its path in the container and where the agent
// materialised it.
type mount struct{ path, local string }

// localize applies the sandbox conventions to one container argument or env value (for an
// argument "--flag=value", to the value): a listen address without a host becomes one on ip
// (the pod IP's loopback twin), and a path at or under a mountPath becomes the path in the
// materialised volume. Anything else stays as it is, so dial addresses such as 127.0.0.1:6379
// keep working.
func localize(v string, ip netip.Addr, mounts []mount) string {
	prefix, value := "", v
	if strings.HasPrefix(v, "-") {
		if i := strings.IndexByte(v, '='); i > 0 {
			prefix, value = v[:i+1], v[i+1:]
		}
	}
	if host, port, err := net.SplitHostPort(value); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		if n, err := strconv.Atoi(port); err == nil && n > 0 && n < 1<<16 {
			return prefix + net.JoinHostPort(ip.String(), port)
		}
	}
	if !strings.HasPrefix(value, "/") {
		return v
	}
	clean, best := path.Clean(value), -1
	for i, m := range mounts {
		mp := path.Clean(m.path)
		if (clean == mp || strings.HasPrefix(clean, strings.TrimSuffix(mp, "/")+"/")) &&
			(best < 0 || len(mp) > len(path.Clean(mounts[best].path))) {
			best = i
		}
	}
	if best < 0 {
		return v
	}
	rel := strings.TrimPrefix(clean, path.Clean(mounts[best].path))
	return prefix + filepath.Join(mounts[best].local, filepath.FromSlash(rel))
}

// expand replaces $(NAME) with the value of an earlier variable, as the kubelet does in args
// and env values: an unknown reference stays as written, and $$ is a literal $.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
				} else {
					b.WriteString(s[i : i+3+end])
				}
				i += 2 + end
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// env resolves a container's environment the kubelet's way: a small base (PATH, HOME,
// HOSTNAME), then envFrom, then env in order with $(VAR) references to earlier variables.
// Values come from the agent's cache; a missing non-optional Secret, ConfigMap or key is an
// error (the kubelet's CreateContainerConfigError).
func (w *podWorker) env(ctx context.Context, c corev1.Container) (map[string]string, error) {
	vars := map[string]string{"PATH": os.Getenv("PATH"), "HOME": w.dir, "HOSTNAME": w.pod.Name}
	for _, from := range c.EnvFrom {
		kind, name, optional := "Secret", "", (*bool)(nil)
		switch {
		case from.SecretRef != nil:
			name, optional = from.SecretRef.Name, from.SecretRef.Optional
		case from.ConfigMapRef != nil:
			kind, name, optional = "ConfigMap", from.ConfigMapRef.Name, from.ConfigMapRef.Optional
		default:
			continue
		}
		data, err := w.objectData(ctx, kind, name, optional)
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			vars[from.Prefix+k] = string(v)
		}
	}
	for _, e := range c.Env {
		v, err := w.envValue(ctx, e, vars)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		vars[e.Name] = v
	}
	return vars, nil
}

func (w *podWorker) envValue(ctx context.Context, e corev1.EnvVar, earlier map[string]string) (string, error) {
	switch vf := e.ValueFrom; {
	case vf == nil:
		return expand(e.Value, earlier), nil
	case vf.FieldRef != nil:
		return w.fieldValue(vf.FieldRef.FieldPath)
	case vf.SecretKeyRef != nil:
		return w.keyValue(ctx, "Secret", vf.SecretKeyRef.Name, vf.SecretKeyRef.Key, vf.SecretKeyRef.Optional)
	case vf.ConfigMapKeyRef != nil:
		return w.keyValue(ctx, "ConfigMap", vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key, vf.ConfigMapKeyRef.Optional)
	}
	return "", fmt.Errorf("this valueFrom source is not supported by the node agent")
}

func (w *podWorker) keyValue(ctx context.Context, kind, name, key string, optional *bool) (string, error) {
	data, err := w.objectData(ctx, kind, name, optional)
	if err != nil {
		return "", err
	}
	v, ok := data[key]
	if !ok && !isTrue(optional) {
		return "", fmt.Errorf("couldn't find key %s in %s %s/%s", key, kind, w.key.Namespace, name)
	}
	return string(v), nil
}

// objectData reads a Secret's or ConfigMap's data from the cache; nil for a missing optional one.
func (w *podWorker) objectData(ctx context.Context, kind, name string, optional *bool) (map[string][]byte, error) {
	key := types.NamespacedName{Namespace: w.key.Namespace, Name: name}
	data := map[string][]byte{}
	var err error
	if kind == "Secret" {
		var s corev1.Secret
		if err = w.a.client.Get(ctx, key, &s); err == nil {
			maps.Copy(data, s.Data)
		}
	} else {
		var cm corev1.ConfigMap
		if err = w.a.client.Get(ctx, key, &cm); err == nil {
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
			maps.Copy(data, cm.BinaryData)
		}
	}
	switch {
	case apierrors.IsNotFound(err) && isTrue(optional):
		return nil, nil
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%s %q not found", strings.ToLower(kind), name)
	case err != nil:
		return nil, fmt.Errorf("reading %s %q: %w", strings.ToLower(kind), name, err)
	}
	return data, nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// fieldValue resolves a downward-API fieldRef of the pod (the fields an env var may use).
func (w *podWorker) fieldValue(field string) (string, error) {
	switch field {
	case "metadata.name":
		return w.pod.Name, nil
	case "metadata.namespace":
		return w.pod.Namespace, nil
	case "metadata.uid":
		return string(w.pod.UID), nil
	case "spec.nodeName":
		return w.a.cfg.NodeName, nil
	case "spec.serviceAccountName":
		return w.pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return w.ip.String(), nil
	case "status.hostIP", "status.hostIPs":
		return w.a.cfg.NodeIP, nil
	}
	if k, ok := strings.CutPrefix(field, "metadata.labels['"); ok && strings.HasSuffix(k, "']") {
		return w.pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported by the node agent", field)
}
