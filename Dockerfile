# syntax=docker/dockerfile:1
# Switchboard container image: `docker build -t switchboard .` (see README, "Running in
# production"). No secret is baked in: the access key, signing key and TLS material are generated
# into the data volume on first start, or configured through SWITCHBOARD__... variables and mounts.

# --- build ---------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# .git is not in the build context; name the revision for `switchboard version` with
#   docker build --build-arg SWITCHBOARD_GIT_REVISION="$(git rev-parse --short HEAD)" .
ARG SWITCHBOARD_GIT_REVISION=unknown
ENV SWITCHBOARD_GIT_REVISION=${SWITCHBOARD_GIT_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchboard \
    && install -m 0755 target/release/switchboard /usr/local/bin/switchboard

# --- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl only for the HEALTHCHECK; ca-certificates for webhooks to HTTPS endpoints.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --home-dir /var/lib/switchboard \
       --shell /usr/sbin/nologin switchboard \
    && install -d -o switchboard -g switchboard -m 0700 /var/lib/switchboard
COPY --from=build /usr/local/bin/switchboard /usr/local/bin/switchboard
COPY deploy/docker/config.toml /etc/switchboard/config.toml

# The database, generated keys and TLS material: keep this volume, back it up with
# `switchboard backup` (README).
VOLUME ["/var/lib/switchboard"]
# ./config.toml is read from the working directory: mount your own over it, or override keys
# with SWITCHBOARD__SECTION__KEY. Required: SWITCHBOARD__WEBRTC__PUBLIC_IPS.
WORKDIR /etc/switchboard
USER 10001:10001

# HTTPS (REST API, signaling, call page, /metrics), QUIC, and one WebRTC port per media worker.
EXPOSE 8443/tcp 4433/udp 50000-50003/udp

# Liveness on loopback; -k because the certificate names the public host, not 127.0.0.1 (with
# the generated one, --cacert /var/lib/switchboard/tls/ca.pem would also do).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["curl", "-fsSk", "--max-time", "4", "https://127.0.0.1:8443/healthz"]

# SIGTERM stops gracefully within server.shutdown_grace_seconds (10 s): give `docker stop` more,
# e.g. --stop-timeout 15.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
