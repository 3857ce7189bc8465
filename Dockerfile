# syntax=docker/dockerfile:1
#
# One image with every Gatehouse binary in /usr/local/bin:
#   gatehouse           the CLI (and `gatehouse serve` / `gatehouse dev`: all in one process)
#   gatehouse-identity  the identity service: users, service accounts (no HTTP port)
#   gatehouse-keys      the keys service: API keys, their expiry sweeper (no HTTP port)
#   gatehouse-devices   the devices service: device login (RFC 8628) (no HTTP port)
#   gatehouse-connectors the connector broker: service connectors, leases, components
#                       (no HTTP port; calls the clouds' APIs)
#   gatehouse-gateway   the HTTP gateway (GATEHOUSE_BIND, 0.0.0.0:8080 here)
# Pick one with the container's command; the default is the gateway.
#
#   DOCKER_BUILDKIT=1 docker build -t gatehouse:local .

FROM rust:1-bookworm AS builder
WORKDIR /app
COPY . .
# The registry and target dirs are BuildKit cache mounts: they survive between builds but
# are not part of the layer, so the binaries are copied out of the cache to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/app/target,sharing=locked \
    cargo build --release --locked \
        -p gatehouse -p gatehouse-identity -p gatehouse-keys -p gatehouse-devices \
        -p gatehouse-connectors -p gatehouse-gateway \
        --bin gatehouse --bin gatehouse-identity --bin gatehouse-keys \
        --bin gatehouse-devices --bin gatehouse-connectors --bin gatehouse-gateway \
 && mkdir -p /out \
 && cp target/release/gatehouse target/release/gatehouse-identity \
       target/release/gatehouse-keys target/release/gatehouse-devices \
       target/release/gatehouse-connectors target/release/gatehouse-gateway /out/

FROM debian:bookworm-slim AS runtime
# ca-certificates follows the base image's point release; pinning it buys nothing.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin gatehouse
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
# The user has no home: the CLI, when run inside the container (`docker compose exec gateway
# gatehouse login ...`), keeps its session under /tmp instead.
ENV GATEHOUSE_BIND=0.0.0.0:8080 \
    GATEHOUSE_LOG=info \
    GATEHOUSE_LOG_FORMAT=json \
    GATEHOUSE_CONFIG_DIR=/tmp/gatehouse
EXPOSE 8080
CMD ["gatehouse-gateway"]
