# syntax=docker/dockerfile:1
# The Kappa image: one image for the coordinator and the worker (the command picks the role).
#
#   docker build -t kappa:0.1.0 .
#   docker run --rm kappa:0.1.0 worker --help
#
# Debian (glibc), not Alpine: rocksdb-native ships prebuilt glibc binaries (prebuilds/linux-x64,
# linux-arm64) that need libstdc++ and libatomic.so.1; there is no musl build.
ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: dev dependencies, TypeScript → dist/, then drop the dev dependencies -----------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# rocksdb-native has no install script (its binary is in the package), so no compiler is needed.
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json index.ts ./
COPY protocol protocol
COPY runtime runtime
COPY state state
COPY tables tables
COPY archive archive
COPY worker worker
COPY coordinator coordinator
COPY client client
COPY cli cli
RUN npm run build && npm prune --omit=dev --no-audit --no-fund --loglevel=error

# --- runtime: node, the production node_modules, dist/ and the example jobs -----------------------
FROM ${NODE_IMAGE} AS runtime
# libatomic1: the RocksDB binding links it. tini: PID 1 that forwards SIGTERM to node and reaps.
RUN apt-get update \
  && apt-get install -y --no-install-recommends libatomic1 tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    KAPPA_STATE_DIR=/var/lib/kappa/state
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Job modules: the example here; your own jobs go in a derived image (COPY jobs/ /app/jobs/, where
# `import … from 'kappa-runtime'` resolves to this package) or a mounted ConfigMap (deploy/README.md).
COPY examples ./examples
# The state dir belongs to the unprivileged `node` user (uid 1000) of the base image.
RUN mkdir -p /var/lib/kappa/state && chown -R node:node /var/lib/kappa
USER node
# Fails the build, not the first task, when the native module cannot load (e.g. libatomic missing).
RUN node -e "import('rocksdb-native').then(() => console.log('rocksdb-native loads'))"
VOLUME ["/var/lib/kappa/state"]
# 9464: worker /metrics /healthz /readyz /status; 9465: coordinator /metrics /healthz /readyz /v1/status.
EXPOSE 9464 9465
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["--help"]
