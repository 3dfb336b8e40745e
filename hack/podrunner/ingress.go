package podrunner

import (
	"cmp"
	"net"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// Route is one Ingress rule path (or an Ingress default backend) flattened for matching.
type Route struct {
	Namespace string
	Ingress   string
	Host      string // "" = any host; "*.example.com" = one extra leading label
	Path      string
	PathType  networkingv1.PathType
	Default   bool // the Ingress's spec.defaultBackend: used only when no rule matches
	Backend   networkingv1.IngressServiceBackend
}

// Routes flattens Ingresses into routes. Resource backends are skipped (nothing to proxy to).
func Routes(ings []networkingv1.Ingress) []Route {
	var rs []Route
	for _, ing := range ings {
		if ing.DeletionTimestamp != nil {
			continue
		}
		if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
			rs = append(rs, Route{Namespace: ing.Namespace, Ingress: ing.Name, Path: "/", PathType: networkingv1.PathTypePrefix, Default: true, Backend: *b.Service})
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if p.Backend.Service == nil {
					continue
				}
				pt := networkingv1.PathTypePrefix
				if p.PathType != nil && *p.PathType == networkingv1.PathTypeExact {
					pt = networkingv1.PathTypeExact
				}
				path := cmp.Or(p.Path, "/")
				rs = append(rs, Route{Namespace: ing.Namespace, Ingress: ing.Name, Host: strings.ToLower(rule.Host), Path: path, PathType: pt, Backend: *p.Backend.Service})
			}
		}
	}
	return rs
}

// Match picks the route for a request the way ingress controllers do: the most specific host
// (exact, then wildcard, then any host) wins, then Exact paths over Prefix paths, then the
// longest prefix; a default backend is the last resort. Ties go to the earlier route.
func Match(routes []Route, hostHeader, path string) (Route, bool) {
	host := strings.ToLower(hostHeader)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	best, bestScore := -1, [3]int{}
	for i, r := range routes {
		hs := hostScore(r, host)
		if hs == 0 || !pathMatches(r, path) {
			continue
		}
		score := [3]int{hs, 0, len(r.Path)}
		if r.PathType == networkingv1.PathTypeExact {
			score[1] = 1
		}
		if best < 0 || slices.Compare(score[:], bestScore[:]) > 0 {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return Route{}, false
	}
	return routes[best], true
}

// hostScore: 0 = no match, 1 = default backend, 2 = any host, 3 = wildcard, 4 = exact.
func hostScore(r Route, host string) int {
	switch {
	case r.Default:
		return 1
	case r.Host == "":
		return 2
	case r.Host == host:
		return 4
	case strings.HasPrefix(r.Host, "*."):
		label, rest, ok := strings.Cut(host, ".")
		if ok && label != "" && rest == r.Host[2:] {
			return 3
		}
	}
	return 0
}

// pathMatches implements Exact and element-wise Prefix matching ("/foo" matches "/foo" and
// "/foo/bar", not "/foobar"); ImplementationSpecific is treated as Prefix.
func pathMatches(r Route, path string) bool {
	if path == "" {
		path = "/"
	}
	if r.PathType == networkingv1.PathTypeExact {
		return path == r.Path
	}
	prefix := strings.TrimSuffix(r.Path, "/")
	if prefix == "" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
