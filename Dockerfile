# One image for every part of the operator: the binary's first argument selects
# manager | receiver | worker (the controller sets it in each pod's args).
# Build: make docker-build (docker build -t resend-webhook-operator:dev .)

# The builder runs on the build machine's platform and cross-compiles (GOOS/GOARCH below), so
# `make docker-buildx` builds arm64 without emulating the compiler.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
WORKDIR /src
ARG TARGETOS
ARG TARGETARCH

# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download

# Everything else that .dockerignore lets through: the Go packages of the binary.
COPY . .

# Static binary (distroless/static has no libc); -trimpath keeps build paths out of it.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/resend-webhook-operator .

FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /out/resend-webhook-operator /resend-webhook-operator
# 65532 is distroless' "nonroot" user; numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/resend-webhook-operator"]
