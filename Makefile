# resend-webhook-operator — every task a developer or CI runs.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN            ?= $(CURDIR)/bin
BINARY         := $(BIN)/resend-webhook-operator
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
# promtool unit-tests the alerts; built without service discovery (remove_all_sd), which only
# scrape configs need: ≈2 min cold on 2 cores instead of ≈5.
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL       := $(BIN)/promtool-$(PROMTOOL_VERSION)
export PROMTOOL
IMG            ?= resend-webhook-operator:dev
# envtest binaries (kube-apiserver, etcd, kubectl) are built from the Go module proxy into a
# cache outside the repo; a pre-set KUBEBUILDER_ASSETS wins.
KUBEBUILDER_ASSETS ?= $(shell hack/envtest-assets.sh --print-dir)
export KUBEBUILDER_ASSETS
TEST_TIMEOUT   ?= 60m

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Build
.PHONY: build
build: ## Build bin/resend-webhook-operator (manager | receiver | worker | send).
	go build -trimpath -o $(BINARY) .

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Regenerate the CRD and RBAC in config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:allowDangerousTypes=false paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

$(CONTROLLER_GEN):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/controller-gen $(CONTROLLER_GEN)

$(PROMTOOL):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(BIN)/promtool $(PROMTOOL)

##@ Test
.PHONY: envtest
envtest: ## Build kube-apiserver, etcd and kubectl into the cache (once per machine).
	hack/envtest-assets.sh >/dev/null

.PHONY: redis
redis: ## Make sure redis-server >= 6.2 is installed (apt-get when root).
	hack/ensure-redis.sh

.PHONY: promtool
promtool: $(PROMTOOL) ## Build the pinned promtool (alert rule tests) into bin/.

.PHONY: test
test: redis envtest promtool build ## Run every test: unit, fuzz corpus, Redis and envtest integration, alert rules, e2e.
	go vet ./...
	go test -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files are stale.
	git diff --exit-code -- config api

##@ Benchmarks (report ratios measured side by side; see README)
.PHONY: bench-receiver
bench-receiver: redis build ## Receiver (batching on/off) vs a minimal handler over HTTP, same run; the binary's RSS.
	RWH_BINARY=$(BINARY) go test -run '^$$' -bench BenchmarkReceiver -benchtime 1x -timeout 20m ./receiver/

.PHONY: bench-worker
bench-worker: redis build ## Worker to a no-op sink vs bare asynq.Server and asynq + http.Post, same run; the binary's RSS.
	RWH_BINARY=$(BINARY) go test -run '^$$' -bench BenchmarkWorker -benchtime 1x -timeout 20m ./worker/

.PHONY: bench-controller
bench-controller: redis envtest ## Reconcile N ResendWebhooks in envtest; API writes during resync.
	go test -run '^$$' -bench BenchmarkController -benchtime 1x -timeout 30m ./controllers/

##@ Run
.PHONY: dev
dev: redis envtest build ## Local control plane + Redis + operator + pods on this machine.
	go run ./hack/dev

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .
