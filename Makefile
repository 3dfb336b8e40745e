# resend-webhook-operator — every task a developer or CI runs.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN            ?= $(CURDIR)/bin
BINARY         := $(BIN)/resend-webhook-operator
# Pinned tools live in a per-machine cache outside the repo (like the envtest binaries), so a
# fresh clone reuses them.
TOOLS          ?= $(shell hack/envtest-assets.sh --print-tools-dir)
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)
# promtool unit-tests the alerts; built without service discovery (remove_all_sd), which only
# scrape configs need: ≈2 min cold on 2 cores instead of ≈5.
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL       := $(TOOLS)/promtool-$(PROMTOOL_VERSION)
export PROMTOOL
# helm lints and renders the chart in the tests (charts/); built like controller-gen: ≈3.5 min
# cold on 2 cores.
HELM_VERSION   ?= v3.22.0
HELM           := $(TOOLS)/helm-$(HELM_VERSION)
export HELM
CHART          := charts/resend-webhook-operator
IMG            ?= resend-webhook-operator:dev
PLATFORMS      ?= linux/amd64,linux/arm64
# envtest binaries (kube-apiserver, etcd, kubectl) are built from the Go module proxy into a
# cache outside the repo; a pre-set KUBEBUILDER_ASSETS wins.
KUBEBUILDER_ASSETS ?= $(shell hack/envtest-assets.sh --print-dir)
export KUBEBUILDER_ASSETS
# deploy/undeploy act on the cluster of your kubeconfig; kustomize is kubectl's built-in one.
# Default: kubectl from PATH, else the one built with the envtest binaries.
KUBECTL        ?= $(or $(shell command -v kubectl 2>/dev/null),$(KUBEBUILDER_ASSETS)/kubectl)
export KUBECTL
TEST_TIMEOUT   ?= 60m

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Build
.PHONY: build
build: ## Build bin/resend-webhook-operator (manager | receiver | worker | send).
	go build -trimpath -o $(BINARY) .

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Regenerate the CRD and RBAC in config/ (and their copies in the chart).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:allowDangerousTypes=false paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart-files

# The chart cannot read files outside its directory: it carries copies of what config/ holds
# once (the tests fail when a copy is stale).
.PHONY: chart-files
chart-files: ## Copy the CRD, the manager's RBAC rules, the alerts and the dashboard from config/ into the chart.
	cp config/crd/bases/webhooks.resend-operator.dev_resendwebhooks.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/manager-role.yaml
	cp config/prometheus/rules.yaml $(CHART)/files/prometheus-rules.yaml
	cp config/grafana/dashboard.json $(CHART)/files/dashboard.json

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/controller-gen $(CONTROLLER_GEN)

$(HELM):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/helm $(HELM)

$(PROMTOOL):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(TOOLS)/promtool $(PROMTOOL)

##@ Test
.PHONY: envtest
envtest: ## Build kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kubectl into the cache (once per machine).
	hack/envtest-assets.sh >/dev/null

.PHONY: redis
redis: ## Make sure redis-server >= 6.2 is installed (apt-get when root).
	hack/ensure-redis.sh

.PHONY: promtool
promtool: $(PROMTOOL) ## Build the pinned promtool (alert rule tests) into bin/.

.PHONY: helm
helm: $(HELM) ## Build the pinned helm (chart lint, render and dry-run tests) into bin/.

.PHONY: test
test: redis envtest promtool helm build ## Run every test: unit, fuzz corpus, Redis and envtest integration, alert rules, chart, e2e.
	go vet ./...
	RWH_BINARY=$(BINARY) go test -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files are stale.
	git diff --exit-code -- config api $(CHART)

##@ Benchmarks (report ratios measured side by side; see README)
.PHONY: bench-receiver
bench-receiver: redis build ## Receiver (batching on/off) vs a minimal handler over HTTP, same run; the binary's RSS.
	RWH_BINARY=$(BINARY) go test -run '^$$' -bench '^BenchmarkReceiver$$' -benchtime 1x -timeout 20m ./receiver/

.PHONY: bench-worker
bench-worker: redis build ## Worker to a no-op sink vs bare asynq.Server and asynq + http.Post, same run; the binary's RSS.
	RWH_BINARY=$(BINARY) go test -run '^$$' -bench '^BenchmarkWorker$$' -benchtime 1x -timeout 20m ./worker/

.PHONY: bench-cluster
bench-cluster: redis build ## Receiver binary on 1 redis-server (shards 1 and 3) vs a 3-node Redis Cluster (shards 3), same run (~2 min).
	RWH_BINARY=$(BINARY) go test -run '^$$' -bench BenchmarkReceiverCluster -benchtime 1x -timeout 10m ./receiver/

.PHONY: bench-controller
bench-controller: redis envtest ## Reconcile N ResendWebhooks in envtest; API writes during resync.
	go test -run '^$$' -bench BenchmarkController -benchtime 1x -timeout 30m ./controllers/

##@ Run
.PHONY: dev
dev: redis envtest build ## Local control plane with Kubernetes controllers, a node agent running the pods, Redis, Resend simulator, operator.
	@# A built binary rather than go run: go run exits 1 on Ctrl-C even when the sandbox stopped cleanly.
	go build -o $(BIN)/sandbox ./test/sandbox/cmd
	$(BIN)/sandbox

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Release and deploy
.PHONY: docker-buildx
docker-buildx: ## Build IMG for PLATFORMS (default linux/amd64,linux/arm64) and push it (needs Docker with buildx).
	docker buildx build --platform=$(PLATFORMS) --tag $(IMG) --push .

.PHONY: build-installer
build-installer: ## Write dist/install.yaml: CRD, RBAC and operator, with IMG as its image and the pods' default image.
	@mkdir -p dist
	hack/build-installer.sh "$(IMG)" > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml
	@echo "dist/install.yaml: kubectl apply --server-side -f dist/install.yaml"

.PHONY: deploy
deploy: build-installer ## Install or upgrade the operator with IMG in the cluster of your kubeconfig.
	$(KUBECTL) apply --server-side -f dist/install.yaml

# The CRD stays: deleting it deletes every ResendWebhook (their Redis queues stay in Redis).
.PHONY: undeploy
undeploy: ## Remove the operator from the cluster of your kubeconfig, but not the CRD and the webhooks.
	hack/build-installer.sh "$(IMG)" | $(KUBECTL) delete --ignore-not-found $(UNDEPLOY_FLAGS) -l 'app.kubernetes.io/component!=crd' -f -
