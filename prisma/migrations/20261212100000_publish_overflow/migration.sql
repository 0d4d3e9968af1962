-- Business events that found PUBLISH_MAX_WAITING events already waiting in notify.publish: the worker stores them here
-- instead of adding them (before: added anyway, ~1.3 KB of Redis each, so a missing consumer grew Redis until its
-- maxmemory refused writes — the ingress's too), and its relay adds them back, oldest first, once the queue is under
-- the ceiling. The unique "eventId" (the event's notificationId, its job id) keeps one row per event. A new, empty
-- table: nothing in use is locked.
CREATE TABLE "PublishOverflow" (
    "id" BIGSERIAL NOT NULL,
    "eventId" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "PublishOverflow_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "PublishOverflow_eventId_key" ON "PublishOverflow"("eventId");
