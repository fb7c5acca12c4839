# syntax=docker/dockerfile:1
# Streamboard image: both binaries (`streamboard` server, `projector`), stripped,
# and the board page the server serves at / (built in a Node stage); not the
# load generator.
#   docker build -t streamboard .        (or, with Redis and PostgreSQL: docker compose up --build)
#   docker run -p 8080:8080 -e STREAMBOARD__AUTH__JWT_SECRET=$(openssl rand -hex 32) streamboard
#                                        the server alone: quick-win mode on port 8080
#   ... streamboard projector            the projector (needs the Redis and PostgreSQL URLs);
#                                        its /metrics listens on port 9187
#
# Rust version: at least the workspace's rust-version (1.92, in Cargo.toml).
ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# The board page (clients/web): built with Node here, served as static files
# by the server, which needs no Node at run time.
FROM node:${NODE_VERSION}-bookworm-slim AS page
WORKDIR /src/clients
COPY clients/package.json clients/package-lock.json clients/.npmrc ./
COPY clients/typescript/package.json typescript/
COPY clients/react/package.json react/
COPY clients/example/package.json example/
COPY clients/web/package.json web/
# Only what the page needs (not the other packages' tools: Metro, React).
RUN npm ci -w @streamboard/web --no-audit --no-fund --loglevel=error
COPY clients/typescript/ typescript/
COPY clients/web/ web/
RUN npm run build -w @streamboard/web

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and target/ between builds, so only
# changed crates recompile; binaries are copied out of the cached target/ and
# stripped there (of symbols and line tables: 80 MB each before, 13 MB
# streamboard and 10 MB projector after).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p streamboard -p projector --bins \
 && mkdir -p /out \
 && cp target/release/streamboard target/release/projector /out/ \
 && strip /out/streamboard /out/projector

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home streamboard
WORKDIR /app
COPY --from=builder /out/streamboard /out/projector /app/
COPY config/ /app/config/
COPY --from=page /src/clients/web/dist/ /app/web/
# The projector's /metrics must listen beyond the container's loopback to be
# scraped; the server ignores this setting.
ENV PATH="/app:${PATH}" \
    STREAMBOARD_ENV=prod \
    STREAMBOARD__SERVER__ADDR=0.0.0.0:8080 \
    STREAMBOARD__SERVER__WEB_DIR=/app/web \
    STREAMBOARD__PROJECTOR__METRICS_ADDR=0.0.0.0:9187
USER streamboard
# 8080: the server (HTTP, WebSocket, /metrics); 9187: the projector's /metrics.
EXPOSE 8080 9187
# Healthy when the server's /ready answers 200 (Redis and PostgreSQL reachable),
# or, in a projector container (nothing on 8080), when its /metrics answers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/ready \
     || curl -fsS -o /dev/null http://127.0.0.1:9187/metrics \
     || exit 1
# `projector` runs the other binary from the same image.
CMD ["streamboard"]
