package podrunner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// ingressProxy serves every Ingress: Host header and path pick the rule, the rule's Service
// (port → targetPort, selector) picks the ready local pods, round-robin.
type ingressProxy struct {
	r     *Runner
	next  atomic.Uint64
	proxy *httputil.ReverseProxy
}

type targetKey struct{}

func newIngressProxy(r *Runner) *ingressProxy {
	ip := &ingressProxy{r: r}
	ip.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			pr.Out.Host = pr.In.Host // ingress controllers pass the original Host on
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			r.log.Warn("ingress: upstream error", "host", req.Host, "path", req.URL.Path, "error", err)
			http.Error(w, "local ingress: upstream error: "+err.Error(), http.StatusBadGateway)
		},
	}
	return ip
}

func (ip *ingressProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	var list networkingv1.IngressList
	if err := ip.r.client.List(ctx, &list); err != nil {
		http.Error(w, "local ingress: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	route, ok := Match(Routes(list.Items), req.Host, req.URL.Path)
	if !ok {
		http.Error(w, fmt.Sprintf("local ingress: no Ingress rule matches host %q path %q", req.Host, req.URL.Path), http.StatusNotFound)
		return
	}
	addrs, err := ip.r.endpoints(ctx, route.Namespace, route.Backend)
	if err != nil || len(addrs) == 0 {
		http.Error(w, fmt.Sprintf("local ingress: no ready endpoints for service %s/%s (%v)", route.Namespace, route.Backend.Name, err), http.StatusServiceUnavailable)
		return
	}
	addr := addrs[int(ip.next.Add(1)%uint64(len(addrs)))]
	target := &url.URL{Scheme: "http", Host: addr}
	ip.proxy.ServeHTTP(w, req.WithContext(context.WithValue(ctx, targetKey{}, target)))
}

// endpoints resolves an Ingress backend to the addresses of ready local pods, like the
// endpoints controller: Service port (by number or name) → targetPort → the pods the Service
// selects.
func (r *Runner) endpoints(ctx context.Context, ns string, b networkingv1.IngressServiceBackend) ([]string, error) {
	var svc corev1.Service
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: b.Name}, &svc); err != nil {
		return nil, err
	}
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if (b.Port.Name != "" && p.Name == b.Port.Name) || (b.Port.Name == "" && p.Port == b.Port.Number) {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		return nil, fmt.Errorf("service has no port %s", backendPort(b))
	}
	target := sp.TargetPort
	if target.Type == intstr.Int && target.IntVal == 0 || target.Type == intstr.String && target.StrVal == "" {
		target = intstr.FromInt32(sp.Port)
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, fmt.Errorf("service has no selector")
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	r.mu.Lock()
	var candidates []*pod
	for key, ds := range r.deployments {
		if key.Namespace != ns {
			continue
		}
		for _, p := range ds.pods {
			if sel.Matches(labels.Set(p.Labels)) {
				candidates = append(candidates, p)
			}
		}
	}
	r.mu.Unlock()
	var addrs []string
	for _, p := range candidates {
		if !p.Ready() {
			continue
		}
		if port, ok := p.port(target.String()); ok {
			addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		}
	}
	return addrs, nil
}

func backendPort(b networkingv1.IngressServiceBackend) string {
	if b.Port.Name != "" {
		return b.Port.Name
	}
	return strconv.Itoa(int(b.Port.Number))
}

// reconcileIngress writes the load-balancer address (the proxy's) into the Ingress status,
// as an ingress controller does.
func (r *Runner) reconcileIngress(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ing networkingv1.Ingress
	if err := r.client.Get(ctx, req.NamespacedName, &ing); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	host, portStr, _ := net.SplitHostPort(r.IngressAddr())
	port, _ := strconv.Atoi(portStr)
	lb := networkingv1.IngressLoadBalancerIngress{Ports: []networkingv1.IngressPortStatus{{Port: int32(port), Protocol: corev1.ProtocolTCP}}}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		lb.IP = host
	} else {
		lb.IP = "127.0.0.1"
	}
	want := []networkingv1.IngressLoadBalancerIngress{lb}
	if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
		return reconcile.Result{}, nil
	}
	orig := ing.DeepCopy()
	ing.Status.LoadBalancer.Ingress = want
	return reconcile.Result{}, r.client.Status().Patch(ctx, &ing, client.MergeFrom(orig))
}

// prefixWriter writes whole lines to w, each prefixed; writers sharing mu do not interleave.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = io.WriteString(pw.w, pw.prefix+string(pw.buf[:i+1]))
		pw.buf = pw.buf[i+1:]
	}
	return len(b), nil
}

func (pw *prefixWriter) flush() {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if len(pw.buf) > 0 {
		_, _ = io.WriteString(pw.w, pw.prefix+string(pw.buf)+"\n")
		pw.buf = nil
	}
}
