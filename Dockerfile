# lethe container image.
#
#   docker build -t lethe:0.1.0 .
#   docker run --rm lethe:0.1.0 --help
#
# Build stage: the same Rust and Debian release the tests run on; TLS is
# rustls (no OpenSSL), so the binary needs only glibc, libm and libgcc_s —
# exactly what distroless/cc carries (tests/it/image.rs checks the binary's
# dynamic dependencies and glibc symbol versions against Debian 12).
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY policies policies
RUN cargo build --release --locked --bin lethe \
 && strip target/release/lethe

# Final stage: no shell, no package manager; runs as uid/gid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/lethe /usr/local/bin/lethe
COPY policies /etc/lethe/policies
USER 65532:65532
ENV LETHE_CONFIG=/etc/lethe/lethe.toml
ENTRYPOINT ["/usr/local/bin/lethe"]
CMD ["run"]
