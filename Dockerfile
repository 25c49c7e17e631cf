# Agimo's container image: one static binary on an empty base, running as non-root.
# Build: docker build -t <your-registry>/agimo:<tag> .

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: the binary must run on an image without libc. -trimpath/-s -w: reproducible, small.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /agimo .

# scratch: nothing but the binary and CA roots (for a TLS Prometheus/API server address).
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /agimo /agimo
# Numeric non-root user (65532, distroless' "nonroot"): no /etc/passwd needed, and
# Kubernetes' runAsNonRoot can verify a numeric UID.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/agimo"]
