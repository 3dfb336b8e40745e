package podrunner

import (
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PortAllocator hands out a free loopback port for a container port of a pod.
type PortAllocator func() (int, error)

// PortMap maps a pod's container ports to the local ports its processes listen on. Kubernetes
// gives every pod its own network namespace; here all pods share 127.0.0.1, so each container
// port gets a distinct free port.
type PortMap struct {
	ByNumber map[int32]int
	ByName   map[string]int
}

// Lookup resolves a probe or Service target port (a number or a name) to the local port.
func (m PortMap) Lookup(port string) (int, bool) {
	if n, err := strconv.Atoi(port); err == nil {
		p, ok := m.ByNumber[int32(n)]
		return p, ok
	}
	p, ok := m.ByName[port]
	return p, ok
}

// NewPortMap allocates a local port for every declared container port of the pod.
func NewPortMap(spec *corev1.PodSpec, alloc PortAllocator) (PortMap, error) {
	m := PortMap{ByNumber: map[int32]int{}, ByName: map[string]int{}}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			local, ok := m.ByNumber[p.ContainerPort]
			if !ok {
				var err error
				if local, err = alloc(); err != nil {
					return m, err
				}
				m.ByNumber[p.ContainerPort] = local
			}
			if p.Name != "" {
				m.ByName[p.Name] = local
			}
		}
	}
	return m, nil
}

// Mount is a volume mount materialised on the local disk.
type Mount struct {
	MountPath string // path inside the container, e.g. /etc/rwh/signing
	LocalPath string // the directory (or file, with subPath) that stands in for it
}

// Rewriter turns container arguments and env values into ones that work for a local process:
// listen addresses move to the pod's local ports, paths under a volume mount move to the
// materialised directory.
type Rewriter struct {
	Ports  *PortMap
	Mounts []Mount
	Alloc  PortAllocator // for listen addresses on ports the pod did not declare
}

var flagWithValue = regexp.MustCompile(`^(--?[A-Za-z0-9][-A-Za-z0-9_.]*=)(.*)$`)

// Args rewrites every argument: "--flag=value" rewrites the value, any other argument as a whole.
func (rw *Rewriter) Args(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		prefix, value := "", a
		if m := flagWithValue.FindStringSubmatch(a); m != nil {
			prefix, value = m[1], m[2]
		}
		v, err := rw.Value(value)
		if err != nil {
			return nil, err
		}
		out = append(out, prefix+v)
	}
	return out, nil
}

// Value rewrites one value: a listen address ("":port, 0.0.0.0:port, [::]:port, localhost:port)
// or the address of a declared container port becomes 127.0.0.1:<local port>; a path at or under
// a mount path becomes the local path. Anything else is returned unchanged.
func (rw *Rewriter) Value(v string) (string, error) {
	if p, ok := rw.path(v); ok {
		return p, nil
	}
	host, portStr, err := net.SplitHostPort(v)
	if err != nil || strings.ContainsAny(v, "/@") {
		return v, nil
	}
	n, err := strconv.Atoi(portStr)
	if err != nil || n <= 0 || n > 65535 {
		return v, nil
	}
	local, declared := rw.Ports.ByNumber[int32(n)]
	if !declared {
		if !isListenHost(host) || rw.Alloc == nil {
			return v, nil // a remote address (e.g. a sentinel): leave it alone
		}
		if local, err = rw.Alloc(); err != nil {
			return "", err
		}
		rw.Ports.ByNumber[int32(n)] = local
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(local)), nil
}

func isListenHost(h string) bool {
	return slices.Contains([]string{"", "0.0.0.0", "::", "127.0.0.1", "localhost"}, h)
}

// path maps a container path to the local path of the mount with the longest matching mount path.
func (rw *Rewriter) path(v string) (string, bool) {
	if !strings.HasPrefix(v, "/") {
		return "", false
	}
	clean := filepath.Clean(v)
	best := -1
	for i, m := range rw.Mounts {
		mp := filepath.Clean(m.MountPath)
		if clean == mp || strings.HasPrefix(clean, mp+"/") || mp == "/" {
			if best < 0 || len(mp) > len(filepath.Clean(rw.Mounts[best].MountPath)) {
				best = i
			}
		}
	}
	if best < 0 {
		return "", false
	}
	m := rw.Mounts[best]
	rest := strings.TrimPrefix(clean, filepath.Clean(m.MountPath))
	return filepath.Join(m.LocalPath, rest), true
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// ExpandVars replaces $(NAME) references with env values, as the kubelet does for command, args
// and env; unknown references stay as they are, and $$ escapes a dollar.
func ExpandVars(s string, env map[string]string) string {
	const esc = "\x00dollar\x00"
	s = strings.ReplaceAll(s, "$$", esc)
	s = varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
	return strings.ReplaceAll(s, esc, "$")
}
