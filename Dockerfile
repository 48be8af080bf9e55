# meeting-edge in a container. Not built or tested in this repository's CI: keep it minimal.
#   docker build -t meeting-edge .
#   docker run -p 8001:8001 -v meeting-edge-data:/data meeting-edge
# The config, storage and logs live in /data (storage/ and logs/ follow the config file's folder).

FROM node:20-slim AS build
WORKDIR /app
# A C compiler for the optional sendfile/accept addon (native/edge-net.c). Without it the build
# only warns and the node copies package bytes through buffers instead.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY scripts/build.mjs scripts/build.mjs
COPY native native
COPY start.ts tsconfig.json ./
COPY src src
# npm ci runs `prepare` (scripts/build.mjs): start.js and build/edge-net.node.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/start.js /app/start.js.map /app/package.json ./
COPY --from=build /app/build build
COPY public public
RUN mkdir /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 8001
# The node stops cleanly on SIGTERM (docker stop); it is PID 1 here and handles the signal itself.
STOPSIGNAL SIGTERM
# --max-semi-space-size=2, --expose-gc: see deploy/meeting-edge.service.
CMD ["node", "--max-semi-space-size=2", "--expose-gc", "/app/start.js", "--config", "/data/node_config.json", "--host", "0.0.0.0", "--port", "8001"]
