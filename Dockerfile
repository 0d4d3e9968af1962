# One image for every app; docker-compose.yml picks the process with `command`.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY apps/ingress/package.json apps/ingress/
COPY apps/worker/package.json apps/worker/
COPY apps/dashboard/package.json apps/dashboard/
COPY apps/sim/package.json apps/sim/
COPY packages/wechatpay/package.json packages/wechatpay/
COPY packages/db/package.json packages/db/
COPY packages/queue/package.json packages/queue/
COPY packages/config/package.json packages/config/
COPY packages/testing/package.json packages/testing/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run db:generate
ENV NODE_ENV=production
USER node
