package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/bounded"
)

// TenantPolicy restricts what a ResendWebhook may ask of the shared ingress controller. The
// zero value allows everything.
type TenantPolicy struct {
	// AllowedIngressHosts are the host patterns spec.ingress.host must match: an exact host
	// ("hooks.example.com") or "*." and a domain ("*.hooks.example.com": any host below that
	// domain, at any depth). When set, an Ingress without a host (it would answer for every
	// host) is refused too.
	AllowedIngressHosts []string
	// AllowedIngressAnnotationPrefixes are the prefixes every key of spec.ingress.annotations
	// must start with (e.g. "cert-manager.io/").
	AllowedIngressAnnotationPrefixes []string
}

// Flag names of the policy: the violation messages name them so a tenant knows whom to ask.
const (
	FlagAllowedIngressHosts              = "allowed-ingress-hosts"
	FlagAllowedIngressAnnotationPrefixes = "allowed-ingress-annotation-prefixes"
)

// Check returns an error naming the first host or annotation the policy forbids, and the flag
// that forbids it. The HTTPRoute of spec.gateway is held to the same rules: its hostnames are
// hosts (none at all would take every host of the Gateway's listeners), its annotations are
// annotations.
func (p TenantPolicy) Check(rw *v1alpha1.ResendWebhook) error {
	if g := rw.Spec.Gateway; g != nil {
		if len(p.AllowedIngressHosts) > 0 && len(g.Hostnames) == 0 {
			return fmt.Errorf("spec.gateway.hostnames (none: every host of the Gateway) is not allowed by the operator's --%s (%s)",
				FlagAllowedIngressHosts, strings.Join(p.AllowedIngressHosts, ","))
		}
		for i, h := range g.Hostnames {
			if len(p.AllowedIngressHosts) > 0 && !slices.ContainsFunc(p.AllowedIngressHosts, func(pattern string) bool { return hostMatches(pattern, h) }) {
				return fmt.Errorf("spec.gateway.hostnames[%d] %s is not allowed by the operator's --%s (%s)",
					i, bounded.Text(h, 253), FlagAllowedIngressHosts, strings.Join(p.AllowedIngressHosts, ","))
			}
		}
		return p.checkAnnotations("spec.gateway.annotations", g.Annotations)
	}
	in := rw.Spec.Ingress
	if in == nil {
		return nil
	}
	if len(p.AllowedIngressHosts) > 0 && !slices.ContainsFunc(p.AllowedIngressHosts, func(pattern string) bool { return hostMatches(pattern, in.Host) }) {
		host := in.Host
		if host == "" {
			host = "(none: every host)"
		}
		return fmt.Errorf("spec.ingress.host %s is not allowed by the operator's --%s (%s)",
			bounded.Text(host, 253), FlagAllowedIngressHosts, strings.Join(p.AllowedIngressHosts, ","))
	}
	return p.checkAnnotations("spec.ingress.annotations", in.Annotations)
}

// checkAnnotations returns an error naming the first annotation key (of field) no allowed prefix
// starts.
func (p TenantPolicy) checkAnnotations(field string, annotations map[string]string) error {
	if len(p.AllowedIngressAnnotationPrefixes) == 0 {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if !slices.ContainsFunc(p.AllowedIngressAnnotationPrefixes, func(prefix string) bool { return strings.HasPrefix(k, prefix) }) {
			return fmt.Errorf("%s key %q is not allowed by the operator's --%s (%s)",
				field, bounded.Text(k, 317), FlagAllowedIngressAnnotationPrefixes, strings.Join(p.AllowedIngressAnnotationPrefixes, ","))
		}
	}
	return nil
}

// hostMatches reports whether host matches an exact pattern or a "*.domain" pattern.
func hostMatches(pattern, host string) bool {
	if host == "" {
		return false
	}
	if domain, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+domain)
	}
	return host == pattern
}

// Validate rejects patterns that would never match or match too much.
func (p TenantPolicy) Validate() error {
	for _, pattern := range p.AllowedIngressHosts {
		domain, _ := strings.CutPrefix(pattern, "*.")
		if domain == "" || strings.Contains(domain, "*") || strings.ContainsAny(domain, " /:") {
			return fmt.Errorf("--%s: %q is neither a host nor *.domain", FlagAllowedIngressHosts, pattern)
		}
	}
	for _, prefix := range p.AllowedIngressAnnotationPrefixes {
		if prefix == "" {
			return fmt.Errorf("--%s: an empty prefix would allow every annotation", FlagAllowedIngressAnnotationPrefixes)
		}
	}
	return nil
}
