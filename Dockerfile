# syntax=docker/dockerfile:1
# whyfail as a container: `whyfail serve` on 0.0.0.0:8080. Multi-stage: a Rust builder, then a
# slim Debian runtime with only the binary (playbooks are built in), run as a non-root user.
#
#   docker build -t whyfail .
#   docker run -p 8080:8080 -e WHYFAIL_TOKEN=... whyfail
#   (replicas: -e WHYFAIL_SHARED_STATE=redis://redis:6379/0; see deploy/compose.yaml)
#
# A non-loopback listener needs a token: WHYFAIL_TOKEN, or --token-file with a mounted secret.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY engine engine
COPY providers providers
COPY src src
COPY playbooks playbooks
COPY panel panel
COPY examples examples
# BuildKit caches: the registry and the target directory survive between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin whyfail \
 && cp target/release/whyfail /whyfail \
 && strip /whyfail

FROM debian:bookworm-slim
# TLS roots are built into the binary (webpki-roots); nothing else is needed at run time.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin whyfail
COPY --from=build /whyfail /usr/local/bin/whyfail
USER 10001:10001
EXPOSE 8080
ENV RUST_LOG=info
# /healthz needs no token; bash's /dev/tcp keeps curl out of the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/whyfail", "serve", "--listen", "0.0.0.0:8080"]
