package v1alpha1

// Condition types of ResendWebhook status. These names are a public contract.
const (
	// ConditionReady is True when every condition that applies is True: the current spec is
	// live and events flow end to end.
	ConditionReady = "Ready"
	// ConditionSecretResolved is True when the signing Secret and its keys exist and hold valid secrets.
	ConditionSecretResolved = "SecretResolved"
	// ConditionReceiverAvailable is True when the receiver Deployment runs the current spec and is available.
	ConditionReceiverAvailable = "ReceiverAvailable"
	// ConditionWorkerAvailable is True when the worker Deployment runs the current spec and is
	// available (only with spec.worker).
	ConditionWorkerAvailable = "WorkerAvailable"
	// ConditionIngressReady is True when the Ingress has a load-balancer address (only with spec.ingress).
	ConditionIngressReady = "IngressReady"
	// ConditionRouteReady is True when every Gateway the HTTPRoute attaches to accepted it and
	// resolved its backend (only with spec.gateway).
	ConditionRouteReady = "RouteReady"
	// ConditionWorkerAutoscalerReady is True when KEDA's ScaledObject for the workers is ready:
	// KEDA reads the queue's backlog and scales on it (only with spec.worker.autoscaling).
	ConditionWorkerAutoscalerReady = "WorkerAutoscalerReady"
	// ConditionQueueReachable is True when Redis answers PING with the configured credentials.
	ConditionQueueReachable = "QueueReachable"
	// ConditionSinkAvailable is False while a worker's circuit breaker holds deliveries because
	// the sink looks down; Unknown until a worker has reported. Only False blocks Ready.
	ConditionSinkAvailable = "SinkAvailable"
	// ConditionQueueDurable reports whether Redis persists writes (AOF) and never evicts keys.
	// It is advice: it never changes Ready.
	ConditionQueueDurable = "QueueDurable"
	// ConditionRegistered is True when the endpoint is registered and enabled at Resend (only
	// with spec.resend).
	ConditionRegistered = "Registered"
)

// Condition reasons. The reasons of Ready and of each condition are part of the public contract:
// alerts and scripts match on them.
const (
	// Ready.
	ReasonReady           = "Ready"
	ReasonNotReady        = "NotReady"
	ReasonApplyFailed     = "ApplyFailed"
	ReasonNameConflict    = "NameConflict"
	ReasonRolloutFailed   = "RolloutFailed"
	ReasonScaledToZero    = "ScaledToZero"
	ReasonPolicyViolation = "PolicyViolation"
	ReasonSinkUnavailable = "SinkUnavailable" // also a reason of SinkAvailable

	// SecretResolved.
	ReasonSecretsResolved = "Resolved"
	ReasonSecretNotFound  = "SecretNotFound"
	ReasonKeyMissing      = "KeyMissing"
	ReasonInvalidSecret   = "InvalidSecret"

	// ReceiverAvailable and WorkerAvailable.
	ReasonAvailable         = "Available"
	ReasonDeploymentMissing = "DeploymentNotFound"
	ReasonUnavailable       = "Unavailable"
	ReasonProgressing       = "Progressing"

	// IngressReady.
	ReasonAddressAssigned = "AddressAssigned"
	ReasonNoAddress       = "NoLoadBalancerAddress"
	ReasonIngressMissing  = "IngressNotFound"

	// RouteReady and WorkerAutoscalerReady: the Gateway controller (for a parent of the route)
	// or KEDA has not reported on the object's current generation yet.
	ReasonPending = "Pending"

	// RouteReady.
	ReasonRouteAccepted    = "Accepted"
	ReasonGatewayAPIAbsent = "GatewayAPINotInstalled" // the HTTPRoute CRD is not served
	ReasonRouteMissing     = "RouteNotFound"
	ReasonRouteNotAccepted = "NotAccepted"     // a parent Gateway refused the route
	ReasonRefsNotResolved  = "RefsNotResolved" // a parent could not resolve the receiver Service

	// WorkerAutoscalerReady.
	ReasonScalerReady         = "ScalerReady"
	ReasonKEDAAbsent          = "KEDANotInstalled" // the ScaledObject CRD is not served; workers keep spec.worker.replicas
	ReasonScaledObjectMissing = "ScaledObjectNotFound"
	ReasonScalerNotReady      = "ScalerNotReady" // KEDA reports the ScaledObject not ready (e.g. Redis unreachable for it)

	// QueueReachable.
	ReasonReachable          = "Reachable"
	ReasonUnreachable        = "Unreachable"
	ReasonCredentials        = "CredentialsUnavailable"
	ReasonInvalidRedisConfig = "InvalidConfig"

	// SinkAvailable.
	ReasonSinkReachable = "SinkReachable"
	ReasonNoReports     = "NoWorkerReports"

	// QueueDurable.
	ReasonDurable           = "Durable"
	ReasonNoPersistence     = "NoPersistence"
	ReasonSnapshotsOnly     = "SnapshotsOnly"
	ReasonEvictionPolicy    = "EvictionPolicy"
	ReasonDurabilityUnknown = "ConfigUnreadable"

	// Registered (also ReasonNameConflict: the signing Secret exists and is not this webhook's).
	ReasonRegistered         = "Registered"
	ReasonDisabledByResend   = "DisabledByResend"
	ReasonEndpointUnknown    = "EndpointUnknown"    // no spec.resend.endpoint and no status.url yet
	ReasonAPIKeyUnavailable  = "APIKeyUnavailable"  // the API key Secret or key is missing
	ReasonUnauthorized       = "Unauthorized"       // Resend rejected the API key (401/403)
	ReasonRateLimited        = "RateLimited"        // waiting for the API key's rate limit
	ReasonResendError        = "ResendError"        // Resend unreachable, 5xx or an unexpected answer
	ReasonSigningSecretError = "SigningSecretError" // the signing Secret could not be read or written
	ReasonDeletionFailed     = "DeletionFailed"     // the webhook could not be removed at Resend; deletion waits
)
