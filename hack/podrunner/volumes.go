package podrunner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Files are the contents of a materialised volume: relative path → bytes.
type Files map[string][]byte

// Equal reports whether two volumes hold the same files.
func (f Files) Equal(g Files) bool {
	return maps.EqualFunc(f, g, func(a, b []byte) bool { return string(a) == string(b) })
}

// ObjectSource reads the Secrets and ConfigMaps volumes refer to (the runner reads its cache).
type ObjectSource interface {
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
}

// ErrUnsupportedVolume is returned for volume types the runner cannot materialise.
var ErrUnsupportedVolume = errors.New("unsupported volume type")

// VolumeFiles computes the files of a Secret, ConfigMap or projected volume from the current
// objects, honouring items and optional like the kubelet: a missing object or key that is not
// optional is an error (the kubelet would keep the pod in ContainerCreating).
func VolumeFiles(ctx context.Context, src ObjectSource, namespace string, v corev1.Volume) (Files, error) {
	files := Files{}
	switch {
	case v.Secret != nil:
		err := addSecret(ctx, src, namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, files)
		return files, err
	case v.ConfigMap != nil:
		err := addConfigMap(ctx, src, namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, files)
		return files, err
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			var err error
			switch {
			case s.Secret != nil:
				err = addSecret(ctx, src, namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, files)
			case s.ConfigMap != nil:
				err = addConfigMap(ctx, src, namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, files)
			default:
				err = fmt.Errorf("volume %s: projected source other than secret/configMap: %w", v.Name, ErrUnsupportedVolume)
			}
			if err != nil {
				return nil, err
			}
		}
		return files, nil
	}
	return nil, fmt.Errorf("volume %s: %w", v.Name, ErrUnsupportedVolume)
}

func addSecret(ctx context.Context, src ObjectSource, ns, name string, items []corev1.KeyToPath, optional *bool, files Files) error {
	s, err := src.Secret(ctx, ns, name)
	if apierrors.IsNotFound(err) && isTrue(optional) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	data := maps.Clone(s.Data)
	if data == nil {
		data = map[string][]byte{}
	}
	for k, v := range s.StringData { // never stored by the apiserver, but harmless
		data[k] = []byte(v)
	}
	return addItems("secret", ns, name, data, items, optional, files)
}

func addConfigMap(ctx context.Context, src ObjectSource, ns, name string, items []corev1.KeyToPath, optional *bool, files Files) error {
	cm, err := src.ConfigMap(ctx, ns, name)
	if apierrors.IsNotFound(err) && isTrue(optional) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return addItems("configmap", ns, name, data, items, optional, files)
}

func addItems(kind, ns, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, files Files) error {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if isTrue(optional) {
				continue
			}
			return fmt.Errorf("%s %s/%s has no key %q", kind, ns, name, it.Key)
		}
		if !filepath.IsLocal(it.Path) {
			return fmt.Errorf("%s %s/%s: item path %q is not a relative path inside the volume", kind, ns, name, it.Path)
		}
		files[it.Path] = v
	}
	return nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// AtomicDir writes a volume's files the way the kubelet does, so readers never see a
// half-written update: the files live in a hidden timestamped directory, "..data" is a symlink
// to it, and each visible top-level name is a symlink through "..data". An update writes a new
// timestamped directory and swaps "..data" with one rename.
type AtomicDir struct {
	Dir  string
	last Files
}

const dataLink = "..data"

// Write makes the directory hold exactly files; it reports whether anything changed.
func (a *AtomicDir) Write(files Files) (bool, error) {
	if a.last != nil && a.last.Equal(files) {
		return false, nil
	}
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		return false, err
	}
	tsDir, err := os.MkdirTemp(a.Dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05.")+"*")
	if err != nil {
		return false, err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return false, err
	}
	for p, content := range files {
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return false, err
		}
	}
	oldTarget, _ := os.Readlink(filepath.Join(a.Dir, dataLink))
	tmpLink := filepath.Join(a.Dir, dataLink+"_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return false, err
	}
	if err := os.Rename(tmpLink, filepath.Join(a.Dir, dataLink)); err != nil {
		return false, err
	}
	if err := a.syncTopLevel(files); err != nil {
		return false, err
	}
	if oldTarget != "" && strings.HasPrefix(oldTarget, "..") {
		_ = os.RemoveAll(filepath.Join(a.Dir, oldTarget))
	}
	a.last = maps.Clone(files)
	return true, nil
}

// syncTopLevel links every visible top-level name through ..data and removes names that left.
func (a *AtomicDir) syncTopLevel(files Files) error {
	want := map[string]bool{}
	for p := range files {
		top, _, _ := strings.Cut(filepath.ToSlash(p), "/")
		want[top] = true
	}
	for _, top := range slices.Sorted(maps.Keys(want)) {
		link := filepath.Join(a.Dir, top)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, top) {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(filepath.Join(dataLink, top), link); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(a.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") && !want[e.Name()] {
			if err := os.RemoveAll(filepath.Join(a.Dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
