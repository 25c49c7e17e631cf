#!/usr/bin/env bash
# Build Agimo's container image without Docker and without a registry: the same image as the
# Dockerfile's (the static binary at /agimo, CA roots at /etc/ssl/certs/ca-certificates.crt,
# USER 65532:65532, ENTRYPOINT ["/agimo"], ports 8080 and 9090), written as an OCI archive.
#
# Usage: hack/image.sh NAME OUT.tar      e.g. hack/image.sh registry.example.com/agimo:v0.1.0 agimo.tar
# Then:  skopeo copy oci-archive:agimo.tar docker://registry.example.com/agimo:v0.1.0   (push)
#        ctr -n k8s.io images import agimo.tar                                          (a node's containerd)
# Needs: go, tar, sha256sum, the CA bundle (Debian: ca-certificates).
set -euo pipefail
name=$1 out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
# Exactly the Dockerfile's build: CGO off (no libc in the image), -trimpath, -s -w.
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin/agimo" .
# The Dockerfile copies its build image's (Debian's) CA bundle; this takes the host's.
CA=/etc/ssl/certs/ca-certificates.crt
[[ -f $CA ]] || { echo "no $CA (Debian: apt-get install ca-certificates)" >&2; exit 1; }
hack/node/mkimage.sh "$name" "$out" --entrypoint /agimo --user 65532:65532 --expose 8080 --expose 9090 \
  "$bin/agimo:/agimo" "$CA:/etc/ssl/certs/ca-certificates.crt"
