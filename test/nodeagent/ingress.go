package nodeagent

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// ingressProxy serves every Ingress (any class) on one address: the Host header and the path
// pick a rule, the rule's Service port its EndpointSlices' ready endpoints, round-robin.
type ingressProxy struct {
	a     *Agent
	next  atomic.Uint64
	proxy *httputil.ReverseProxy
}

type upstreamKey struct{}

func newIngressProxy(a *Agent) *ingressProxy {
	p := &ingressProxy{a: a}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(r.In.Context().Value(upstreamKey{}).(*url.URL))
			r.Out.Host = r.In.Host // ingress controllers pass the original Host on
			r.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.log.Warn("ingress: upstream error", "host", bounded(r.Host), "upstream", r.URL.Host, "error", err)
			http.Error(w, "sandbox ingress: upstream error", http.StatusBadGateway)
		},
	}
	return p
}

func (p *ingressProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var ings networkingv1.IngressList
	if err := p.a.client.List(ctx, &ings); err != nil {
		http.Error(w, "sandbox ingress: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	ns, backend, ok := matchIngress(ings.Items, r.Host, r.URL.Path)
	if !ok {
		http.Error(w, fmt.Sprintf("sandbox ingress: no Ingress rule matches host %q path %q", bounded(r.Host), bounded(r.URL.Path)), http.StatusNotFound)
		return
	}
	addrs, err := p.a.readyEndpoints(ctx, ns, backend)
	if err != nil || len(addrs) == 0 {
		http.Error(w, fmt.Sprintf("sandbox ingress: no ready endpoints for service %s/%s (%v)", ns, backend.Name, err), http.StatusServiceUnavailable)
		return
	}
	upstream := &url.URL{Scheme: "http", Host: addrs[p.next.Add(1)%uint64(len(addrs))]}
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, upstreamKey{}, upstream)))
}

// bounded cuts attacker-chosen text before it is logged or echoed.
func bounded(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// matchIngress picks the backend for a request among the shapes the operator renders (rules
// with an exact host or none, Prefix paths): a rule for the request's host beats one without
// host, then the longest element-wise prefix wins (every path type counts as Prefix). Ties go
// to the first. Wildcard hosts and default backends are not served.
func matchIngress(ings []networkingv1.Ingress, hostHeader, path string) (string, networkingv1.IngressServiceBackend, bool) {
	host := strings.ToLower(hostHeader)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	path = "/" + strings.TrimPrefix(path, "/")
	var ns string
	var best *networkingv1.IngressServiceBackend
	bestHost, bestLen := false, -1
	for _, ing := range ings {
		if ing.DeletionTimestamp != nil {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			exactHost := rule.Host != ""
			if rule.HTTP == nil || exactHost && strings.ToLower(rule.Host) != host || bestHost && !exactHost {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				prefix := strings.TrimSuffix("/"+strings.TrimPrefix(p.Path, "/"), "/")
				matches := prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
				if p.Backend.Service != nil && matches && (exactHost && !bestHost || len(prefix) > bestLen) {
					ns, best, bestHost, bestLen = ing.Namespace, p.Backend.Service, exactHost, len(prefix)
				}
			}
		}
	}
	if best == nil {
		return "", networkingv1.IngressServiceBackend{}, false
	}
	return ns, *best, true
}

// readyEndpoints resolves an Ingress backend through the Service and its EndpointSlices to
// the ready endpoints' addresses (terminating and unready pods get no traffic).
func (a *Agent) readyEndpoints(ctx context.Context, ns string, b networkingv1.IngressServiceBackend) ([]string, error) {
	var svc corev1.Service
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: b.Name}, &svc); err != nil {
		return nil, err
	}
	portName, found := "", false
	for _, sp := range svc.Spec.Ports {
		if b.Port.Name != "" && sp.Name == b.Port.Name || b.Port.Name == "" && sp.Port == b.Port.Number {
			portName, found = sp.Name, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("service has no port %v", cmp.Or(b.Port.Name, strconv.Itoa(int(b.Port.Number))))
	}
	var eps discoveryv1.EndpointSliceList
	if err := a.client.List(ctx, &eps, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: b.Name}); err != nil {
		return nil, err
	}
	var addrs []string
	for _, s := range eps.Items {
		for _, p := range s.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != portName) || (p.Name == nil && portName != "") {
				continue
			}
			for _, ep := range s.Endpoints {
				if (ep.Conditions.Ready == nil || *ep.Conditions.Ready) && len(ep.Addresses) > 0 {
					addrs = append(addrs, net.JoinHostPort(a.dialIP(ep.Addresses[0]), strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	return addrs, nil
}

// dialIP is where to reach an endpoint address: a pod IP of this node at its loopback twin.
func (a *Agent) dialIP(addr string) string {
	if ip, err := netip.ParseAddr(addr); err == nil && a.cfg.PodCIDR.Contains(ip) {
		return LoopbackIP(ip).String()
	}
	return addr
}

// reconcileIngress writes the proxy's address into the Ingress's load-balancer status, as an
// ingress controller does.
func (a *Agent) reconcileIngress(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ing networkingv1.Ingress
	if err := a.client.Get(ctx, req.NamespacedName, &ing); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	host, portStr, _ := net.SplitHostPort(a.ingressAddr)
	port, _ := strconv.Atoi(portStr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	want := []networkingv1.IngressLoadBalancerIngress{{IP: host,
		Ports: []networkingv1.IngressPortStatus{{Port: int32(port), Protocol: corev1.ProtocolTCP}}}}
	if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
		return reconcile.Result{}, nil
	}
	orig := ing.DeepCopy()
	ing.Status.LoadBalancer.Ingress = want
	return reconcile.Result{}, a.client.Status().Patch(ctx, &ing, client.MergeFrom(orig))
}
