# hazardwatch and hw-gateway as static binaries (CGO_ENABLED=0) on a small
# Alpine, run by a user without privileges. One image serves every part of
# docker-compose.yml: `hazardwatch serve` (the centre), `hazardwatch
# simulate` (the plant) and `hw-gateway` (the gateway boxes).
#
#   docker build -t hazardwatch:local .
#   docker run --rm hazardwatch:local hazardwatch check

FROM golang:1.26.8 AS build
WORKDIR /src
# The modules first, so that a change of the code alone reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/hazardwatch ./cmd/hazardwatch \
 && go build -trimpath -ldflags="-s -w" -o /out/hw-gateway ./cmd/hw-gateway

# Alpine rather than distroless or scratch: its busybox wget and nc are the
# compose file's health checks (/healthz, /readyz, the simulator's port).
FROM alpine:3.22.2
RUN addgroup -S -g 10001 hazardwatch \
 && adduser -S -D -H -u 10001 -G hazardwatch -h /data hazardwatch \
 && mkdir /data && chown 10001:10001 /data
COPY --from=build /out/hazardwatch /out/hw-gateway /usr/local/bin/
USER 10001:10001
# State (the centre's JetStream, history and tokens; a gateway's queue):
# `--data-dir /data`, a volume of its own per container.
WORKDIR /data
VOLUME /data
# The centre's HTTP API and page, the embedded MQTT broker, a gateway's
# /healthz and /metrics.
EXPOSE 8080 1883 9101
CMD ["hazardwatch", "--help"]
