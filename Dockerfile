# syntax=docker/dockerfile:1
# Streamboard image: contains both binaries (`streamboard` server, `projector`).
#   docker build -t streamboard .            (or: docker compose up --build)
#
# Rust version: Cargo.lock currently needs rustc >= 1.89 (uuid 1.29, redis 1.8,
# config 0.15.27, time 0.3.55), so the 1.85 image cannot build it.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and target/ between builds, so only
# changed crates recompile; binaries are copied out of the cached target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && cp target/release/streamboard target/release/projector /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home streamboard
WORKDIR /app
COPY --from=builder /out/streamboard /out/projector /app/
COPY config/ /app/config/
ENV PATH="/app:${PATH}" \
    STREAMBOARD_ENV=prod \
    STREAMBOARD__SERVER__ADDR=0.0.0.0:8080
USER streamboard
EXPOSE 8080
# `projector` runs the other binary from the same image.
CMD ["streamboard"]
