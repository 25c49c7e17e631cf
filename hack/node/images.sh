#!/usr/bin/env bash
# Build the node's images from the tree, as OCI archives in $AGIMO_NODE_DIR/images/ (no
# Docker, no registry), for hack/node/up.sh to import into containerd:
#   agimo.local/agimo:dev       hack/image.sh: the same image as the Dockerfile's
#   agimo.local/upstream:dev    the e2e suite's test app (HTTP, WebSocket echo)
#   agimo.local/grpcapp:dev     the gRPC test app (test/grpcapp: grpc.testing.TestService, health)
#   agimo.local/pause:1         the pod sandbox (hack/node/pause)
#   agimo.local/coredns:VERSION cluster DNS (built by hack/node/build.sh)
# Usage: hack/node/images.sh [COREDNS-BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
source hack/node/common.sh
OUT=$NODE_DIR/images
mkdir -p "$OUT"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
hack/image.sh agimo.local/agimo:dev "$OUT/agimo.tar"
export CGO_ENABLED=0
go build -trimpath -ldflags="-s -w" -tags e2e -o "$bin/upstream" ./test/e2e/upstream
go build -trimpath -ldflags="-s -w" -o "$bin/grpcapp" ./test/grpcapp
go build -trimpath -ldflags="-s -w" -o "$bin/pause" ./hack/node/pause
hack/node/mkimage.sh agimo.local/upstream:dev "$OUT/upstream.tar" --entrypoint /upstream \
  --user 65532:65532 "$bin/upstream:/upstream"
hack/node/mkimage.sh agimo.local/grpcapp:dev "$OUT/grpcapp.tar" --entrypoint /grpcapp \
  --user 65532:65532 "$bin/grpcapp:/grpcapp"
hack/node/mkimage.sh agimo.local/pause:1 "$OUT/pause.tar" --entrypoint /pause --user 65535:65535 "$bin/pause:/pause"
if [[ -n ${1:-} ]]; then
  hack/node/mkimage.sh "agimo.local/coredns:$(basename "$1" | sed 's/^coredns-//')" "$OUT/coredns.tar" \
    --entrypoint /coredns --user 65532:65532 "$1:/coredns"
fi
