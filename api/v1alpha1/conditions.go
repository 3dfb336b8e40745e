package v1alpha1

// Condition types of ResendWebhook status. These names are a public contract.
const (
	// ConditionReady is True when every condition that applies is True.
	ConditionReady = "Ready"
	// ConditionSecretResolved is True when the signing Secret and its keys exist and hold valid secrets.
	ConditionSecretResolved = "SecretResolved"
	// ConditionReceiverAvailable is True when the receiver Deployment is available.
	ConditionReceiverAvailable = "ReceiverAvailable"
	// ConditionWorkerAvailable is True when the worker Deployment is available (only with spec.worker).
	ConditionWorkerAvailable = "WorkerAvailable"
	// ConditionIngressReady is True when the Ingress has a load-balancer address (only with spec.ingress).
	ConditionIngressReady = "IngressReady"
	// ConditionQueueReachable is True when Redis answers PING with the configured credentials.
	ConditionQueueReachable = "QueueReachable"
)
