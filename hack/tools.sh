#!/usr/bin/env bash
# Install what the tests, the e2e suites and the bench need on a fresh Debian machine; quick and
# silent when everything is there already. Called by .ci/run and by the Makefile targets that use
# the tools (`make tools`). Prints nothing but what it installs; fails if a tool is still missing.
#
# Debian packages (command they provide: why):
#   iproute2 (ip, ss): network namespaces for the e2e suite's simulated pods; openssl: the local
#   control plane's certificates; curl (with HTTP/2, checked below): the control plane's scripts
#   and the TLS/HTTP/2 tests (--http2, --http2-prior-knowledge); util-linux (flock, setsid): its
#   scripts; nginx: the bench suite's comparison target; make: the entry points; procps (ps);
#   prometheus (promtool): lints the metrics exposition (proxy tests); containerd, runc, iptables,
#   conntrack, nftables, ca-certificates: the real node of hack/node (make e2e-node, make demo) and
#   its image's CA roots; nghttp2-client (h2load, nghttp): HTTP/2 load (bench h2, h2c) and
#   checks; chromium: the headless browser test over https.
# Go tools, into $(go env GOPATH)/bin (PATH in .ci/run):
#   h2spec: the HTTP/2 conformance suite (RFC 9113, RFC 7541) run against Agimo's listeners.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}

log() { printf '[tools] %s\n' "$*" >&2; }

need=()
for pkg_cmd in iproute2:ip openssl:openssl curl:curl util-linux:flock nginx:nginx make:make procps:ps prometheus:promtool \
  containerd:containerd runc:runc iptables:iptables conntrack:conntrack nftables:nft ca-certificates:update-ca-certificates \
  nghttp2-client:h2load nghttp2-client:nghttp chromium:chromium; do
  pkg=${pkg_cmd%%:*}
  if ! command -v "${pkg_cmd#*:}" >/dev/null 2>&1 && [[ " ${need[*]} " != *" $pkg "* ]]; then
    need+=("$pkg")
  fi
done
if ((${#need[@]})); then
  if [[ $EUID != 0 ]]; then
    log "missing Debian packages: ${need[*]}; not root, so not installing them (apt-get install ${need[*]})"
    exit 1
  fi
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's curl is built with nghttp2; a curl from elsewhere on PATH may not be.
if ! curl -V | grep -qw HTTP2; then
  log "$(command -v curl) lacks HTTP/2 (curl -V lists no HTTP2 feature); Debian's curl has it"
  exit 1
fi

# h2spec has no go.mod: `go install` resolves its imports at their latest versions. The tag is
# v2.2.1 with a +incompatible suffix (a v2 tag without a /v2 module path).
H2SPEC_VERSION=v2.2.1+incompatible
gobin=$($GO env GOBIN)
gobin=${gobin:-$($GO env GOPATH)/bin}
if ! command -v h2spec >/dev/null 2>&1 && [[ ! -x $gobin/h2spec ]]; then
  log "go install github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION (into $gobin)"
  GOFLAGS=-buildvcs=false $GO install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
fi
