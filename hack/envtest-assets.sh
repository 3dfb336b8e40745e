#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, etcd), Kubernetes' own controllers
# (kube-controller-manager, kube-scheduler) and kubectl from the Go module proxy, because
# setup-envtest cannot download prebuilt binaries on machines without general internet.
# Output: the asset directory on stdout (last line); progress on stderr.
# Usage: hack/envtest-assets.sh [--print-dir | --print-tools-dir]
#   --print-tools-dir prints where the Makefile keeps its pinned tools (controller-gen, helm,
#   promtool): the same per-machine cache, so a fresh clone does not build them again.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${RWH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/resend-webhook-operator}"
ASSETS="$CACHE_ROOT/k8s/$K8S_VERSION"
STAGING_VERSION="v0.${K8S_VERSION#1.}"

if [[ "${1:-}" == "--print-dir" ]]; then echo "$ASSETS"; exit 0; fi
if [[ "${1:-}" == "--print-tools-dir" ]]; then echo "$CACHE_ROOT/tools"; exit 0; fi

log() { printf '[envtest-assets] %s\n' "$*" >&2; }
die() { printf '[envtest-assets] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH; install Go 1.26+ first"
mkdir -p "$ASSETS"
work="$CACHE_ROOT/src"
mkdir -p "$work"

build_k8s() { # $1 = binary name under k8s.io/kubernetes/cmd
  local bin="$1" mod="$work/k8s-$K8S_VERSION"
  if [[ -x "$ASSETS/$bin" ]]; then log "$bin $K8S_VERSION: cached"; return; fi
  mkdir -p "$mod"
  if [[ ! -f "$mod/go.mod" ]]; then
    log "resolving k8s.io/kubernetes v$K8S_VERSION staging modules"
    local upstream
    upstream=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [[ -f "$upstream" ]] || die "could not download k8s.io/kubernetes v$K8S_VERSION go.mod from the module proxy"
    {
      echo "module rwh.local/envtest-k8s"
      echo
      echo "go 1.26"
      echo
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      echo
      # Every staging replace of upstream (=> ./staging/src/...) points at the published module instead.
      grep -E '^\s*k8s\.io/[^ ]+ => \./staging/src/' "$upstream" |
        awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
    } >"$mod/go.mod.tmp"
    local n; n=$(grep -c '^replace' "$mod/go.mod.tmp")
    [[ "$n" -gt 20 ]] || die "found only $n staging replaces in upstream go.mod; refusing to continue"
    mv "$mod/go.mod.tmp" "$mod/go.mod"
    log "wrapper module has $n staging replaces"
  fi
  # Measured on 2 shared cores with an empty Go build cache (modules already downloaded):
  # etcd 65 s, kube-apiserver 686 s, kubectl 42 s, kube-controller-manager 240 s,
  # kube-scheduler 17 s — 17.5 min in all. With a warm Go build cache kube-controller-manager
  # takes 11 s and kube-scheduler 3 s; with the binaries in place the script takes milliseconds.
  log "building $bin v$K8S_VERSION (the first build on a machine takes ~11 min for kube-apiserver)"
  local start=$SECONDS
  (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}" \
      -o "$ASSETS/$bin.tmp" "k8s.io/kubernetes/cmd/$bin") || die "building $bin failed (see above)"
  mv "$ASSETS/$bin.tmp" "$ASSETS/$bin"
  log "$bin built in $((SECONDS - start)) s"
}

build_etcd() {
  if [[ -x "$ASSETS/etcd" ]]; then log "etcd $ETCD_VERSION: cached"; return; fi
  local mod="$work/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  if [[ ! -f "$mod/go.mod" ]]; then
    printf 'module rwh.local/envtest-etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$mod/go.mod"
  fi
  log "building etcd $ETCD_VERSION (~1-2 min cold)"
  local start=$SECONDS
  (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3) ||
    die "building etcd failed (see above)"
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
  log "etcd built in $((SECONDS - start)) s"
}

build_etcd
build_k8s kube-apiserver
build_k8s kubectl
build_k8s kube-controller-manager
build_k8s kube-scheduler
log "assets ready in $ASSETS"
echo "$ASSETS"
