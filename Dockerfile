# Ferry's image for docker-compose.yml: ferry-relay, ferryctl and the two example services.
#
#   docker build -t ferry:local .
#
# Stage 1 builds Ferry from this repository, installs it into /opt/ferry, and builds the example
# services against that INSTALLED package (find_package(ferry)), exactly as a user's service is
# built. Stage 2 keeps only the executables and the shared libraries they need.
# Debian bookworm packages only, the same list as scripts/lib/packages.sh (minus tests/servers).

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config ca-certificates \
      libpqxx-dev libpq-dev libhiredis-dev librdkafka-dev libyaml-cpp-dev libspdlog-dev libfmt-dev \
      libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libcurl4-openssl-dev prometheus-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Fault points are for test builds only; they are compiled out here.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFERRY_BUILD_TESTS=OFF -DFERRY_BUILD_BENCH=OFF -DFERRY_FAULT_POINTS=OFF \
 && cmake --build /build \
 && cmake --install /build --prefix /opt/ferry \
 && for svc in order-service inventory-service; do \
      cmake -S examples/$svc -B /build/examples/$svc -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_PREFIX_PATH=/opt/ferry \
      && cmake --build /build/examples/$svc \
      && cmake --install /build/examples/$svc --prefix /opt/ferry || exit 1; \
    done \
 && install -m 0755 /build/bin/ferry-relay /build/bin/ferryctl /opt/ferry/bin/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpqxx-6.4 libpq5 libhiredis0.14 librdkafka1 libyaml-cpp0.7 libspdlog1.10 libfmt9 \
      libcpp-httplib0.11 libprometheus-cpp-core1.0 \
      libcurl4 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin ferry
COPY --from=build /opt/ferry/bin/ferry-relay /opt/ferry/bin/ferryctl \
                  /opt/ferry/bin/order-service /opt/ferry/bin/inventory-service /usr/local/bin/
COPY docker/ferry.yaml /etc/ferry/ferry.yaml
USER ferry
EXPOSE 9464
# ferry-relay is the default; docker-compose.yml runs the services from the same image.
CMD ["ferry-relay", "--config", "/etc/ferry/ferry.yaml"]
