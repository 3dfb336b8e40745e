package nodeagent

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// file is one file of a volume.
type file struct {
	data []byte
	mode os.FileMode
}

// volumeFiles computes the files of a secret, configMap or projected volume from the current
// objects, honouring items, modes and optional like the kubelet.
func (w *podWorker) volumeFiles(ctx context.Context, v corev1.Volume) (map[string]file, error) {
	files := map[string]file{}
	var err error
	switch {
	case v.Secret != nil:
		s := v.Secret
		err = w.addObject(ctx, files, "Secret", s.SecretName, s.Items, s.Optional, fileMode(s.DefaultMode))
	case v.ConfigMap != nil:
		cm := v.ConfigMap
		err = w.addObject(ctx, files, "ConfigMap", cm.Name, cm.Items, cm.Optional, fileMode(cm.DefaultMode))
	case v.Projected != nil:
		mode := fileMode(v.Projected.DefaultMode)
		for _, src := range v.Projected.Sources {
			switch {
			case src.Secret != nil:
				err = w.addObject(ctx, files, "Secret", src.Secret.Name, src.Secret.Items, src.Secret.Optional, mode)
			case src.ConfigMap != nil:
				err = w.addObject(ctx, files, "ConfigMap", src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, mode)
			default:
				err = fmt.Errorf("projected sources other than secret and configMap are not supported by the node agent")
			}
			if err != nil {
				return nil, err
			}
		}
	default:
		err = fmt.Errorf("only secret, configMap, projected and emptyDir volumes are supported by the node agent")
	}
	return files, err
}

func fileMode(m *int32) os.FileMode {
	if m == nil {
		return os.FileMode(corev1.SecretVolumeSourceDefaultMode)
	}
	return os.FileMode(*m) & os.ModePerm
}

// addObject adds a Secret's or ConfigMap's keys (all, or the listed items) to files.
func (w *podWorker) addObject(ctx context.Context, files map[string]file, kind, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode) error {
	data, err := w.objectData(ctx, kind, name, optional)
	if err != nil || data == nil {
		return err
	}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = file{v, mode}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		switch {
		case !ok && isTrue(optional):
			continue
		case !ok:
			return fmt.Errorf("couldn't find key %s in %s %s/%s", it.Key, kind, w.key.Namespace, name)
		case !filepath.IsLocal(it.Path):
			return fmt.Errorf("item path %q of %s %s is not a relative path inside the volume", it.Path, kind, name)
		}
		files[it.Path] = file{v, itemMode(it.Mode, mode)}
	}
	return nil
}

func itemMode(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return fileMode(m)
}

// atomicDir is a volume directory updated the way the kubelet does it, so a reader never sees
// a half-written update: the files live in a hidden timestamped directory, "..data" is a
// symlink to it, and each visible top-level name is a symlink through "..data". An update
// writes a new timestamped directory and swaps "..data" with one rename.
type atomicDir struct {
	dir  string
	last map[string]file
}

const dataLink = "..data"

// write makes the directory hold exactly files; it reports whether anything changed.
func (d *atomicDir) write(files map[string]file) (bool, error) {
	if d.last != nil && maps.EqualFunc(d.last, files, func(a, b file) bool { return a.mode == b.mode && bytes.Equal(a.data, b.data) }) {
		return false, nil
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return false, err
	}
	ts, err := os.MkdirTemp(d.dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return false, err
	}
	visible := map[string]bool{}
	for name, f := range files {
		p := filepath.Join(ts, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return false, err
		}
		if err := os.Chmod(p, f.mode); err != nil { // WriteFile's mode is subject to the umask
			return false, err
		}
		visible[strings.SplitN(filepath.ToSlash(name), "/", 2)[0]] = true
	}
	tmp := filepath.Join(d.dir, dataLink+"_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, dataLink)); err != nil {
		return false, err
	}
	for name := range visible {
		link, target := filepath.Join(d.dir, name), filepath.Join(dataLink, name)
		if got, err := os.Readlink(link); err == nil && got == target {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(target, link); err != nil {
			return false, err
		}
	}
	// Names that left the volume, and the previous timestamped directories.
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		name := e.Name()
		stale := strings.HasPrefix(name, "..") && name != dataLink && name != filepath.Base(ts)
		if stale || !strings.HasPrefix(name, "..") && !visible[name] {
			if err := os.RemoveAll(filepath.Join(d.dir, name)); err != nil {
				return false, err
			}
		}
	}
	d.last = files
	return true, nil
}
