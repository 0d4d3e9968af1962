-- One row per dead letter whose replay was recorded, so that a replay is recorded once however it ends
-- (packages/db/src/repositories/replays.ts). The replay records before it puts the job back; before this table a
-- replay whose process died between the two (SIGKILL, OOM, a deploy) left a REPLAYED event with no job put back, and
-- the next replay of the letter recorded a second one; a replay paused past its Redis claim while a second replay took
-- the letter recorded alongside it (two REPLAYED events for one re-run). Now the next replay takes the row over and
-- completes the replay without recording it again, and a replay a later one took over (a higher `fence`) writes
-- nothing. A new, empty table: nothing in use is locked.
CREATE TABLE "DeadLetterReplay" (
    "letterId" TEXT NOT NULL,
    "notificationId" TEXT,
    "fence" INTEGER NOT NULL,
    "undone" BOOLEAN NOT NULL DEFAULT false,
    "actor" TEXT,
    "changedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "DeadLetterReplay_pkey" PRIMARY KEY ("letterId")
);
