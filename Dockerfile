# The hubsync image: the four binaries (hubsync, producer, consumer, merger) on Debian bookworm.
#
#   docker build -t hubsync:latest \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# How the services start: the entrypoint is the operator CLI, `hubsync`. Each ECS service
# overrides the task definition's `entryPoint` with its binary, e.g.
#   "entryPoint": ["producer"], "command": ["--lake", "s3://bucket/lake"]
# (or `docker run --entrypoint producer hubsync:latest --lake ...`). Every flag also has an
# environment twin (see --help), so `command` may stay empty and the task set environment instead.
# A container with an overridden entryPoint does not inherit a CMD, and this image sets none:
# `hubsync` without arguments prints its usage.
#
# Dependency caching: a plain layer, not BuildKit cache mounts. Cache mounts
# (--mount=type=cache for ~/.cargo/registry and target/) live only on the builder that ran
# them: ephemeral CI runners start cold every time and `--cache-to`/`--cache-from` registry
# caches do not carry them, and they need BuildKit (buildah, kaniko and the legacy builder
# ignore or reject them). A layer built from the manifests alone is cached like any other
# layer, by every builder, locally and in an exported cache; it is rebuilt only when a
# Cargo.toml or Cargo.lock changes. The `planner` stage derives that skeleton from the
# sources themselves (every workspace member's Cargo.toml plus an empty stub for each target
# root), so a new member or binary needs no edit here.
# No `# syntax=` line and no BuildKit-only flags, so `buildah bud` and the legacy builder build
# this file too.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- planner: the workspace's manifests with stub sources -----------------------------------
FROM ${RUNTIME_IMAGE} AS planner
WORKDIR /src
COPY . .
# For every Cargo.toml (the virtual root and each member): the manifest itself; an empty
# src/lib.rs when the crate has one; `fn main() {}` for src/main.rs and for every explicit
# target `path = "....rs"` ([[bin]] and friends); build.rs as is (there is none today).
# Auto-discovered targets (src/bin/*, tests/, benches/) need no stub: a missing one is simply
# not a target. Every mtime is pinned so the skeleton's layer depends on content alone.
RUN set -eu; \
    mkdir -p /skeleton; \
    cp Cargo.lock /skeleton/; \
    find . -path ./target -prune -o -name Cargo.toml -type f -print | while read -r manifest; do \
        dir="$(dirname "$manifest")"; \
        mkdir -p "/skeleton/$dir"; \
        cp "$manifest" "/skeleton/$manifest"; \
        if [ -f "$dir/src/lib.rs" ]; then mkdir -p "/skeleton/$dir/src"; : > "/skeleton/$dir/src/lib.rs"; fi; \
        for target in src/main.rs $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest"); do \
            if [ -f "$dir/$target" ] && [ ! -f "/skeleton/$dir/$target" ]; then \
                mkdir -p "$(dirname "/skeleton/$dir/$target")"; \
                echo 'fn main() {}' > "/skeleton/$dir/$target"; \
            fi; \
        done; \
        if [ -f "$dir/build.rs" ]; then cp "$dir/build.rs" "/skeleton/$dir/build.rs"; fi; \
    done; \
    find /skeleton -exec touch -h -d @0 {} +

# ---- builder ---------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /build
# The packages owning the four binaries: hubsync-infra (hubsync), hubsync-producer,
# hubsync-consumer, hubsync-merger. Only these are built (no tests, benches, sim binary).
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    BUILD_ARGS="--release --locked -p hubsync-infra -p hubsync-producer -p hubsync-consumer -p hubsync-merger --bin hubsync --bin producer --bin consumer --bin merger"
# CARGO_INCREMENTAL=0: the release profile turns incremental on for developers; in a one-shot
# image build it only costs time and space. STRIP=symbols: ~25% smaller binaries; panics keep
# their message and file:line, backtraces lose function names.

# 1. Dependencies only: compiled against the stubs, cached until a manifest or the lock changes.
COPY --from=planner /skeleton/ ./
RUN cargo build $BUILD_ARGS

# 2. The real sources. COPY keeps the build context's mtimes, which may be older than the stub
# build above: cargo would then take the stub crates for fresh and ship stub binaries. Touching
# every source makes the workspace crates rebuild (the dependencies stay cached).
COPY . .
RUN find . -path ./target -prune -o -type f -exec touch {} + \
 && cargo build $BUILD_ARGS \
 && mkdir -p /out \
 && cp target/release/hubsync target/release/producer target/release/consumer target/release/merger /out/ \
 && /out/producer --help | grep -q '^Usage: producer'

# ---- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="hubsync" \
      org.opencontainers.image.description="HubSpot CRM to a deduplicated, dt-partitioned Parquet lake: hubsync (CLI), producer, consumer, merger" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# ca-certificates: reqwest (rustls-platform-verifier) and the AWS SDK (rustls-native-certs)
# verify TLS against the system's roots, read from /etc/ssl/certs; there are no bundled roots.
# The binaries need only libc, libm and libgcc_s, which the base image has.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 hubsync \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/hubsync --shell /usr/sbin/nologin hubsync
COPY --from=builder /out/ /usr/local/bin/
USER hubsync
# Owned by hubsync: an embedded-mode lake given as a relative --lake lands here.
WORKDIR /home/hubsync
ENTRYPOINT ["hubsync"]
