#!/usr/bin/env bash
# Builds the image with scripts/image.sh from binaries cargo already built (it never runs
# cargo: called from `cargo test`, a nested cargo would wait on the build lock), then checks
# the image's runtime contract: the entrypoint is hubsync, producer/consumer/merger start with
# --entrypoint, the user is uid 10001 (not root), the workdir is its own, /etc/ssl/certs has the
# CA bundle, and the OCI archive loads back as the same image.
#
#   PROFILE=release CARGO_TARGET_DIR=~/.cache/hubsync-target scripts/image-test.sh
#
# Exit 0: every check passed; 1: a check failed; 77: skipped (not root).
# The containers run with podman (installed with apt-get when missing), without network. Where
# podman cannot run one (no runtime, a sandbox refusing rlimits or hybrid cgroups), the checks
# run through `buildah run --isolation chroot` instead, which applies the image's user and
# workdir but not its entrypoint (the entrypoint is then checked in the image's config).
# HUBSYNC_IMAGE_TEST_METHOD=podman|buildah forces one.
# Extra arguments go to image.sh (e.g. --no-strip, --rebuild-base).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$SECONDS

if [ "$(id -u)" != 0 ]; then
  echo "image-test.sh: skipped: needs root (debootstrap, chroot, buildah/podman storage)" >&2
  exit 77
fi
export PROFILE="${PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
tag="hubsync:image-test"
archive="$CARGO_TARGET_DIR/image/hubsync-image-test.oci.tar"

fail() { echo "image-test.sh: FAIL: $*" >&2; exit 1; }
pass() { echo "image-test.sh: ok: $*"; }

if ! command -v podman >/dev/null && [ "${HUBSYNC_IMAGE_TEST_METHOD:-}" != buildah ]; then
  echo "image-test.sh: installing podman with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q --no-install-recommends podman crun >&2 \
    || fail "apt-get install podman failed"
fi

summary="$("$repo/scripts/image.sh" --no-build --tag "$tag" --output "$archive" "$@")" || fail "image.sh failed"
echo "$summary"
image_id="$(sed -n 's/^id: *//p' <<< "$summary")"
[ -n "$image_id" ] || fail "image.sh printed no image id"
read -r -a storage <<< "$("$repo/scripts/image.sh" --print-storage)"
B() { buildah "${storage[@]}" "$@"; }

# ---- the image's config --------------------------------------------------------------------
inspect() { B inspect --type image --format "$1" "$tag"; }
[ "$(inspect '{{.OCIv1.Config.User}}')" = hubsync ] || fail "config User is '$(inspect '{{.OCIv1.Config.User}}')', not hubsync"
[ "$(inspect '{{.OCIv1.Config.Entrypoint}}')" = '[hubsync]' ] || fail "config Entrypoint is $(inspect '{{.OCIv1.Config.Entrypoint}}'), not [hubsync]"
[ "$(inspect '{{.OCIv1.Config.WorkingDir}}')" = /home/hubsync ] || fail "config WorkingDir is not /home/hubsync"
[ -z "$(inspect '{{.OCIv1.Config.Cmd}}' | tr -d '[]')" ] || fail "config has a Cmd ($(inspect '{{.OCIv1.Config.Cmd}}')); an ECS entryPoint override would not reset it everywhere"
labels=" $(inspect '{{range $k, $v := .OCIv1.Config.Labels}}{{$k}} {{end}}')"
for l in title description licenses version revision created source base.name; do
  [[ "$labels" == *" org.opencontainers.image.$l "* ]] || fail "label org.opencontainers.image.$l missing (has:$labels)"
done
pass "config: User=hubsync Entrypoint=[hubsync] WorkingDir=/home/hubsync, no Cmd, OCI labels"

# ---- the archive loads back as the same image ----------------------------------------------
loaded="$(podman "${storage[@]}" load -q -i "$archive" 2>&1)" || fail "podman load -i $archive: $loaded"
[ "$(B inspect --type image --format '{{.FromImageID}}' "$tag")" = "$image_id" ] \
  || fail "the archive loaded as $(B inspect --type image --format '{{.FromImageID}}' "$tag"), image.sh built $image_id"
pass "archive $archive loads as $image_id"

# ---- runners -------------------------------------------------------------------------------
# podman: no network, no cgroups (none needed for --help), rlimits lowered below the caller's
# (a sandbox without CAP_SYS_RESOURCE refuses podman's defaults). On a hybrid cgroup host crun
# refuses to start while the cgroup2 hierarchy has controllers: the run then happens in a
# private mount namespace without that mount (the host's mounts are untouched).
podman_run() { # podman_run [--entrypoint X] -- ARGS...
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
  local cmd=(podman "${storage[@]}" --cgroup-manager cgroupfs --events-backend none run --rm
    --network none --cgroups disabled --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
    "${opts[@]}" "$tag" "$@")
  if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers; then
    unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh "${cmd[@]}"
  else
    "${cmd[@]}"
  fi
}
# buildah: the image's user and workdir, the command as given (no entrypoint).
buildah_ctr=""
trap '[ -z "$buildah_ctr" ] || B rm "$buildah_ctr" >/dev/null 2>&1 || true' EXIT
buildah_run() { # buildah_run [--entrypoint X] -- ARGS...
  local entry=hubsync
  if [ "$1" = --entrypoint ]; then entry="$2"; shift 2; fi
  shift
  [ -n "$buildah_ctr" ] || buildah_ctr="$(B from --quiet --pull=never "$tag")"
  BUILDAH_ISOLATION=chroot B run --isolation chroot "$buildah_ctr" -- "$entry" "$@"
}
method="${HUBSYNC_IMAGE_TEST_METHOD:-}"
if [ -z "$method" ]; then
  if probe="$(podman_run --entrypoint /bin/true -- 2>&1)"; then method=podman
  else
    echo "image-test.sh: podman cannot run a container here ($probe); using buildah run --isolation chroot" >&2
    method=buildah
  fi
fi
case "$method" in podman|buildah) ;; *) fail "HUBSYNC_IMAGE_TEST_METHOD must be podman or buildah" ;; esac
run() { "${method}_run" "$@"; }

# ---- the runtime contract ------------------------------------------------------------------
out="$(run -- --help 2>&1)" || fail "hubsync --help (the entrypoint) failed: $out"
grep -q '^Usage: hubsync' <<< "$out" || fail "the entrypoint's --help has no 'Usage: hubsync': $out"
for b in producer consumer merger; do
  out="$(run --entrypoint "$b" -- --help 2>&1)" || fail "$b --help failed: $out"
  grep -q "^Usage: $b" <<< "$out" || fail "$b --help has no 'Usage: $b': $out"
done
pass "hubsync, producer, consumer, merger --help ($method)"
uid="$(run --entrypoint id -- -u 2>&1)" || fail "id -u failed: $uid"
[ "$uid" = 10001 ] || fail "the container runs as uid '$uid', not 10001"
pass "runs as uid 10001 ($(run --entrypoint id -- 2>&1))"
out="$(run --entrypoint sh -- -c 'pwd; test -w . && echo writable; test -s /etc/ssl/certs/ca-certificates.crt && echo certs; ls /etc/ssl/certs | wc -l' 2>&1)" \
  || fail "checking workdir and /etc/ssl/certs failed: $out"
[ "$(sed -n 1p <<< "$out")" = /home/hubsync ] || fail "workdir is '$(sed -n 1p <<< "$out")', not /home/hubsync"
grep -qx writable <<< "$out" || fail "/home/hubsync is not writable by the user"
grep -qx certs <<< "$out" || fail "/etc/ssl/certs/ca-certificates.crt is missing or empty"
pass "workdir /home/hubsync writable, /etc/ssl/certs has $(sed -n 4p <<< "$out") entries"

echo "image-test.sh: passed in $((SECONDS - started))s ($method)"
