#!/usr/bin/env bash
# Renders config/default with IMAGE as the manager's image and as RWH_IMAGE, the default image
# of the receiver and worker pods, and prints one multi-document manifest (make build-installer
# writes it to dist/install.yaml). The image is set by a throw-away overlay (removed on exit),
# so no tracked file is edited.
# Usage: hack/build-installer.sh IMAGE   (KUBECTL: a kubectl with kustomize built in)
set -euo pipefail
image=${1:?usage: $0 REGISTRY/resend-webhook-operator:TAG (or @sha256:…)}
kubectl=${KUBECTL:-kubectl}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/dist"
overlay=$(mktemp -d "$root/dist/.installer.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
# A local-config ConfigMap carries the image into replacements and is not part of the output.
cat >"$overlay/image.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: installer-image
  annotations:
    config.kubernetes.io/local-config: "true"
data:
  image: "$image"
YAML
cat >"$overlay/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../config/default
  - image.yaml
replacements:
  - source:
      kind: ConfigMap
      name: installer-image
      fieldPath: data.image
    targets:
      - select:
          kind: Deployment
          name: controller-manager
        fieldPaths:
          - spec.template.spec.containers.[name=manager].image
          - spec.template.spec.containers.[name=manager].env.[name=RWH_IMAGE].value
YAML
"$kubectl" kustomize "$overlay"
