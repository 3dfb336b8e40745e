package render

import (
	"maps"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
)

// ReceiverService is the ClusterIP Service in front of the receivers' webhook port. The admin
// port is deliberately not part of it.
func ReceiverService(rw *v1alpha1.ResendWebhook) *corev1.Service {
	rw = defaulted(rw)
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(rw, ReceiverName(rw), ComponentReceiver),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: SelectorLabels(rw, ComponentReceiver),
			Ports: []corev1.ServicePort{{
				Name:       ServicePortName,
				Port:       ServicePort,
				TargetPort: intstr.FromString(PortWebhook),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
}

// Ingress routes the public endpoint to the receiver Service; nil without spec.ingress.
func Ingress(rw *v1alpha1.ResendWebhook) *networkingv1.Ingress {
	rw = defaulted(rw)
	in := rw.Spec.Ingress
	if in == nil {
		return nil
	}
	meta := objectMeta(rw, IngressName(rw), ComponentReceiver)
	if len(in.Annotations) > 0 {
		meta.Annotations = maps.Clone(in.Annotations)
	}
	ing := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: meta,
		Spec: networkingv1.IngressSpec{
			IngressClassName: in.ClassName,
			Rules: []networkingv1.IngressRule{{
				Host: in.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     in.Path,
						PathType: new(networkingv1.PathTypePrefix),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: ReceiverName(rw),
							Port: networkingv1.ServiceBackendPort{Name: ServicePortName},
						}},
					}},
				}},
			}},
		},
	}
	if in.TLS != nil {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{in.Host}, SecretName: in.TLS.SecretName}}
	}
	return ing
}

// PodDisruptionBudget lets voluntary disruptions take down at most one receiver at a time;
// nil when there can never be more than one receiver (the budget would protect nothing). Under
// autoscaling the receivers can grow to maxReplicas, so that bound decides.
func PodDisruptionBudget(rw *v1alpha1.ResendWebhook) *policyv1.PodDisruptionBudget {
	rw = defaulted(rw)
	r := rw.Spec.Receiver
	replicas := *r.Replicas
	if r.Autoscaling != nil {
		replicas = r.Autoscaling.MaxReplicas
	}
	if replicas <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(rw, ReceiverName(rw), ComponentReceiver),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: new(intstr.FromInt32(1)),
			// Receivers are unready whenever Redis is down or no signing key is loaded; such
			// pods must never block a node drain.
			UnhealthyPodEvictionPolicy: new(policyv1.AlwaysAllow),
			Selector:                   &metav1.LabelSelector{MatchLabels: SelectorLabels(rw, ComponentReceiver)},
		},
	}
}

// HorizontalPodAutoscaler scales receivers on CPU; nil without spec.receiver.autoscaling.
func HorizontalPodAutoscaler(rw *v1alpha1.ResendWebhook) *autoscalingv2.HorizontalPodAutoscaler {
	rw = defaulted(rw)
	a := rw.Spec.Receiver.Autoscaling
	if a == nil {
		return nil
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: objectMeta(rw, ReceiverName(rw), ComponentReceiver),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				APIVersion: "apps/v1", Kind: "Deployment", Name: ReceiverName(rw),
			},
			MinReplicas: new(a.EffectiveMinReplicas()),
			MaxReplicas: a.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{
						Type:               autoscalingv2.UtilizationMetricType,
						AverageUtilization: new(*a.TargetCPUUtilizationPercentage),
					},
				},
			}},
		},
	}
}
