#!/usr/bin/env bash
# Write a single-layer OCI image archive (an OCI image layout, tarred) without Docker and
# without a registry: only tar and sha256sum. `ctr images import` loads it into containerd
# under NAME (annotation io.containerd.image.name); `skopeo copy oci-archive:OUT.tar
# docker://REGISTRY/REPO:TAG` pushes it to a registry.
#
# Usage: hack/node/mkimage.sh NAME OUT.tar [options] SRC:DST...
#   SRC:DST         a file of the host put at DST in the image (mode kept)
#   --entrypoint P  the image's entrypoint (repeat for arguments)
#   --user U        numeric user[:group], e.g. 65532:65532
#   --expose PORT   an exposed TCP port (repeatable; documentation only, as in a Dockerfile)
# Reproducible: sorted entries, mtime 0, owner 0:0, so the same inputs give the same digest.
set -euo pipefail
name=$1 out=$2; shift 2
entry=() user="" ports=() files=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --entrypoint) entry+=("$2"); shift 2 ;;
    --user) user=$2; shift 2 ;;
    --expose) ports+=("$2"); shift 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
for f in "${files[@]}"; do
  src=${f%%:*} dst=${f#*:}
  mkdir -p "$work/rootfs/$(dirname "$dst")"
  cp -p "$src" "$work/rootfs/$dst"
done
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .
blob() { # FILE: store as a blob, print its sha256
  local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$work/oci/blobs/sha256/$d"; echo "$d"
}
json_list() { local s="" x; for x in "$@"; do s+="${s:+,}\"$x\""; done; echo "[$s]"; }
exposed=""
for p in "${ports[@]}"; do exposed+="${exposed:+,}\"$p/tcp\":{}"; done
layer=$(blob "$work/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"User":"%s","ExposedPorts":{%s},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"hack/node/mkimage.sh"}]}' \
  "$user" "$exposed" "$(json_list "${entry[@]}")" "$layer" >"$work/config.json"
cfg=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
  "$cfg" "$(stat -c %s "$work/config.json")" "$layer" "$(stat -c %s "$work/layer.tar")" >"$work/manifest.json"
man=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$man" "$(stat -c %s "$work/manifest.json")" "$name" "${name##*:}" >"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/oci" -cf "$out" .
echo "$out: $name sha256:$man" >&2
