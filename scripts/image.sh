#!/usr/bin/env bash
# Builds the hubsync container image without a Docker daemon and without Docker Hub: the
# runtime contract of the Dockerfile's final stage (Debian bookworm with ca-certificates, user
# hubsync uid/gid 10001, /usr/local/bin/{hubsync,producer,consumer,merger}, WORKDIR
# /home/hubsync, ENTRYPOINT ["hubsync"], the same OCI labels), from binaries cargo already built.
#
# The base layer is made with debootstrap from deb.debian.org (bookworm minbase, upgraded from
# bookworm-updates and bookworm-security, slimmed like debian:bookworm-slim) and kept in the
# local buildah storage as localhost/hubsync-base, so later runs only add the binaries.
# Needs root (debootstrap, chroot) and apt-get when buildah or debootstrap is missing.
#
# Output: an OCI archive (load it with `podman load -i`, `skopeo copy oci-archive:...`, or
# Docker >= 25 `docker load -i`) and the image in the local storage under the tag, which
# podman reads with the same --root/--runroot/--storage-driver (see `image.sh --print-storage`).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/image.sh [OPTIONS]

Builds the hubsync image from ${CARGO_TARGET_DIR:-target}/${PROFILE:-release}/{hubsync,producer,consumer,merger}.

Options:
  --profile NAME     cargo profile whose binaries go in: release (default) or debug [env PROFILE]
  --output PATH      OCI archive to write (default: ${CARGO_TARGET_DIR:-target}/image/hubsync.oci.tar)
  --tag NAME         image name in the archive and the local storage (default: hubsync:latest)
  --no-build         fail when a binary is missing instead of running cargo build
  --no-strip         ship the binaries as built (default: strip their symbols, as the Dockerfile does)
  --rebuild-base     debootstrap the base layer again (to pick up Debian updates)
  --print-storage    print the storage options for podman/buildah (--root ... --runroot ...
                     --storage-driver ...) and exit
  -h, --help         this help

Environment:
  CARGO_TARGET_DIR       cargo's target directory (default: target in the repository)
  PROFILE                as --profile
  HUBSYNC_IMAGE_CACHE    storage and scratch space (default: $HOME/.cache/hubsync-image)
  HUBSYNC_IMAGE_STORAGE_DRIVER  overlay or vfs (default: overlay when the kernel mounts it here, else vfs)
  DEBIAN_MIRROR          (default: http://deb.debian.org/debian)
EOF
}

die() { echo "image.sh: error: $*" >&2; exit 1; }
log() { echo "image.sh: $*" >&2; }

caller_pwd="$PWD"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$caller_pwd/$1" ;; esac; }

profile="${PROFILE:-release}"
target_dir="$(abspath "${CARGO_TARGET_DIR:-$repo/target}")"
output=""
tag="hubsync:latest"
build=1
strip_bins=1
rebuild_base=0
print_storage=0
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || die "--profile needs a value"; profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --output) [ $# -ge 2 ] || die "--output needs a value"; output="$2"; shift 2 ;;
    --output=*) output="${1#*=}"; shift ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag="$2"; shift 2 ;;
    --tag=*) tag="${1#*=}"; shift ;;
    --no-build) build=0; shift ;;
    --no-strip) strip_bins=0; shift ;;
    --rebuild-base) rebuild_base=1; shift ;;
    --print-storage) print_storage=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$profile" in
  release) profile_dir=release ;;
  debug|dev) profile="dev"; profile_dir=debug ;;
  *) die "--profile must be release or debug, not '$profile'" ;;
esac
output="$(abspath "${output:-$target_dir/image/hubsync.oci.tar}")"
[[ "$tag" == *:* ]] || tag="$tag:latest"

bins=(hubsync producer consumer merger)
# The packages owning them: hubsync-infra (hubsync), hubsync-producer, hubsync-consumer, hubsync-merger.
cargo_args=(--locked --profile "$profile" -p hubsync-infra -p hubsync-producer -p hubsync-consumer -p hubsync-merger)
for b in "${bins[@]}"; do cargo_args+=(--bin "$b"); done

cache="$(abspath "${HUBSYNC_IMAGE_CACHE:-$HOME/.cache/hubsync-image}")"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# ---- storage: a private containers/storage under the cache, independent of /etc/containers ---
mkdir -p "$cache"
overlay_works() {
  local d
  d="$(mktemp -d "$cache/overlay-probe.XXXXXX")" || return 1
  mkdir -p "$d"/{l,u,w,m}
  if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>/dev/null; then
    umount "$d/m"; rm -rf "$d"; return 0
  fi
  rm -rf "$d"; return 1
}
driver="${HUBSYNC_IMAGE_STORAGE_DRIVER:-}"
if [ -z "$driver" ]; then
  if [ -f "$cache/driver" ]; then driver="$(cat "$cache/driver")"
  elif [ "$(id -u)" = 0 ] && overlay_works; then driver=overlay
  else driver=vfs
  fi
fi
case "$driver" in overlay|vfs) ;; *) die "HUBSYNC_IMAGE_STORAGE_DRIVER must be overlay or vfs, not '$driver'" ;; esac
echo "$driver" > "$cache/driver"
storage=(--root "$cache/storage-$driver" --runroot "$cache/run-$driver" --storage-driver "$driver")
if [ "$print_storage" = 1 ]; then echo "${storage[*]}"; exit 0; fi

# ---- tools ---------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot build the base layer; buildah stores as root)"
need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "$strip_bins" = 1 ] && ! command -v strip >/dev/null; then need+=(binutils); fi
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${need[@]}" ca-certificates >&2 || die "apt-get install ${need[*]} failed"
fi
export BUILDAH_ISOLATION=chroot
B() { buildah "${storage[@]}" "$@"; }

# ---- binaries ------------------------------------------------------------------------------
bin_dir="$target_dir/$profile_dir"
missing=()
for b in "${bins[@]}"; do [ -x "$bin_dir/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$build" = 1 ] || die "missing in $bin_dir: ${missing[*]} (build them: cargo build ${cargo_args[*]})"
  command -v cargo >/dev/null || die "missing in $bin_dir: ${missing[*]}, and no cargo to build them"
  log "building ${missing[*]}: cargo build ${cargo_args[*]}"
  (cd "$repo" && CARGO_TARGET_DIR="$target_dir" cargo build "${cargo_args[@]}") || die "cargo build failed"
fi
stale=(); example=""
for b in "${bins[@]}"; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing after the build"
  [ "$(head -c 4 "$bin_dir/$b" | od -An -c | tr -d ' \n')" = '177ELF' ] || die "$bin_dir/$b is not an ELF executable"
  newer="$(find "$repo" -path "$repo/target" -prune -o -name '*.rs' -newer "$bin_dir/$b" -print -quit 2>/dev/null || true)"
  [ -z "$newer" ] || { stale+=("$b"); example="${newer#"$repo"/}"; }
done
[ ${#stale[@]} -eq 0 ] || log "warning: ${stale[*]} in $bin_dir older than some source (e.g. $example): stale build?"

# ---- scratch space, cleaned on exit --------------------------------------------------------
mkdir -p "$cache/tmp"
work="$(mktemp -d "$cache/tmp/build.XXXXXX")"
containers=()
cleanup() {
  local c
  if [ -d "$work/rootfs/proc" ] && mountpoint -q "$work/rootfs/proc"; then umount "$work/rootfs/proc" || true; fi
  for c in "${containers[@]}"; do B rm "$c" >/dev/null 2>&1 || true; done
  # --one-file-system: never follow into a mount left behind.
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
export TMPDIR="$work"

# ---- base layer: Debian bookworm minbase + ca-certificates + user hubsync -------------------
build_base_rootfs() {
  local rootfs="$1"
  log "debootstrap bookworm (minbase, ca-certificates) from $mirror"
  debootstrap --variant=minbase --include=ca-certificates --components=main \
    bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  # What debian:bookworm-slim ships: deb822 sources with updates and security, no docs/man/locales.
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -euc '
    apt-get update -q
    apt-get upgrade -y -q
    apt-get install -y -q --no-install-recommends ca-certificates
    apt-get clean
    groupadd --gid 10001 hubsync
    useradd --uid 10001 --gid 10001 --create-home --home-dir /home/hubsync --shell /usr/sbin/nologin hubsync
  ' > "$work/chroot.log" 2>&1 || { umount "$rootfs/proc"; tail -n 30 "$work/chroot.log" >&2; die "apt-get/useradd in the base rootfs failed (log above)"; }
  umount "$rootfs/proc"
  # Slim as above, drop caches, logs and what the host leaked in (resolv.conf, hostname, /dev nodes).
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* \
         "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
         "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
         "$rootfs"/dev/* "$rootfs"/root/.bash_history
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : > "$rootfs/etc/resolv.conf"; : > "$rootfs/etc/hostname"; : > "$rootfs/etc/machine-id"
  [ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || die "the base rootfs has no /etc/ssl/certs/ca-certificates.crt"
}
# The base is keyed by its recipe: editing build_base_rootfs makes a new one.
base_key="$(declare -f build_base_rootfs | sha256sum | cut -c1-12)"
base="localhost/hubsync-base:bookworm-$base_key"
exec 9> "$cache/base.lock"
flock 9
if [ "$rebuild_base" = 1 ] || ! B inspect --type image "$base" >/dev/null 2>&1; then
  started=$SECONDS
  build_base_rootfs "$work/rootfs"
  tar -C "$work/rootfs" --numeric-owner --sort=name -cf "$work/rootfs.tar" .
  rm -rf --one-file-system "$work/rootfs"
  c="$(B from --quiet scratch)"; containers+=("$c")
  B add --quiet "$c" "$work/rootfs.tar" / >/dev/null
  B config --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --created-by "scripts/image.sh: debootstrap --variant=minbase bookworm + ca-certificates + user hubsync (10001)" "$c"
  B commit --quiet --rm --identity-label=false "$c" "$base" >/dev/null
  containers=()
  rm -f "$work/rootfs.tar"
  log "base image $base built in $((SECONDS - started))s"
else
  log "base image $base (cached; --rebuild-base to refresh)"
fi
flock -u 9

# ---- the image: base + the four binaries ---------------------------------------------------
mkdir -p "$work/bin"
for b in "${bins[@]}"; do
  if [ "$strip_bins" = 1 ]; then strip --strip-all -o "$work/bin/$b" "$bin_dir/$b"
  else cp "$bin_dir/$b" "$work/bin/$b"; fi
  chmod 0755 "$work/bin/$b"
done
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
c="$(B from --quiet --pull=never "$base")"; containers+=("$c")
B copy --quiet --chown 0:0 --chmod 0755 "$c" "${bins[@]/#/$work/bin/}" /usr/local/bin/ >/dev/null
B config \
  --user hubsync \
  --workingdir /home/hubsync \
  --entrypoint '["hubsync"]' \
  --label org.opencontainers.image.title=hubsync \
  --label "org.opencontainers.image.description=HubSpot CRM to a deduplicated, dt-partitioned Parquet lake: hubsync (CLI), producer, consumer, merger" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=${version:-unknown}" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  --label org.opencontainers.image.source= \
  --label "org.opencontainers.image.base.name=$base" \
  --created-by "scripts/image.sh: /usr/local/bin/{hubsync,producer,consumer,merger} ($profile profile)" \
  "$c"
image_id="$(B commit --quiet --rm --identity-label=false "$c" "$tag")"
containers=()
mkdir -p "$(dirname "$output")"
rm -f "$output"
B push --quiet --digestfile "$work/digest" "$tag" "oci-archive:$output:$tag" >/dev/null
echo "image:   localhost/$tag (local storage: ${storage[*]})"
echo "id:      $image_id"
echo "digest:  $(cat "$work/digest")"
echo "size:    $(B images --format '{{.Size}}' "$tag" | head -n 1) unpacked, $(du -h "$output" | cut -f1) archive"
echo "archive: $output"
