# syntax=docker/dockerfile:1
# filegate: multi-stage build on Node 24 LTS (slim Debian). The final image holds the compiled
# output (dist/), migrations/ and the package files with production dependencies only.
#
#   docker build -t filegate .
#   docker run --rm -p 8080:8080 -e API_KEYS=acme:$(openssl rand -hex 24) filegate
#
# Probes: GET /healthz (liveness: the process and its event loop), GET /readyz (readiness: the
# database answers, migrations are applied, not shutting down; 503 otherwise), GET /metrics.
# SIGTERM goes straight to node (PID 1, exec form CMD, no npm or shell in between): readiness
# fails at once, the listener closes after SHUTDOWN_DRAIN_MS, in-flight uploads finish within
# SHUTDOWN_TIMEOUT_MS (default 200 s: give `docker stop -t` / terminationGracePeriodSeconds more).

ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the build needs only tsc, and the runtime dependencies ship plain JS/WASM.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY routes ./routes
# The build also marks the `filegate` command (package.json "bin") executable: it is run directly.
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    UPLOAD_TMP_DIR=/tmp/filegate \
    DATA_DIR=/var/lib/filegate
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && mkdir -p /tmp/filegate /var/lib/filegate \
 && chown 1000:1000 /tmp/filegate /var/lib/filegate \
 && ln -s /app/dist/src/cli/main.js /usr/local/bin/filegate
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# The image's `node` user, by number so Kubernetes' runAsNonRoot can verify it. The code and its
# dependencies stay owned by root: the process can read them, not change them.
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# A 1 MB semi-space (V8's default is 16): every streamed chunk is a short-lived buffer, and on Node 24
# a young generation that scavenges often frees them before they pile up (bench scenario 2, 8
# concurrent 100 MB uploads: peak 161-174 MB; 2 MB: 288-296 MB; 8 MB: 280-290 MB).
# --single-threaded-gc: V8's GC helper threads compete with the forwarding on 2 cores
# (bench:ab, store-and-forward 0.49 vs 0.36 of direct, stream-through 0.68 vs 0.56 without it); see
# docs/performance.md. The flags match `npm start` and the test runner's.
CMD ["node", "--max-semi-space-size=1", "--single-threaded-gc", "dist/src/server.js"]
