-- Layout 5: the sinks' tables (DESIGN §8 "Sinks"). Layout 4's tables are unchanged; an
-- instance of any earlier layout is brought to layout 4 first.
--
-- * `sink_cursors`: per sink, the cursor up to which every journal entry was delivered,
--   and the batch being delivered (recorded before its first attempt, so that a retry,
--   also after a crash or a change of `batch_size`, sends the same range with the same
--   delivery id). `generation` rises with each applied `replay`: the sink's own writes
--   name the generation they continue, so a write in flight cannot undo a replay. A sink
--   removed from the config keeps its row until `sink forget`.
-- * `sink_jobs`: per sink, the scheduled rebroadcast (w3name's republish): its run,
--   where it resumes, whether it finished.
-- * `sink_requests`: what `tidemark-indexer sink …` asks of the writer, which applies it
--   (every other write of these tables is the writer's, on its fenced connection).
CREATE OR REPLACE FUNCTION tidemark.create_sink_tables_v5(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.sink_cursors (
        name              text PRIMARY KEY,
        kind              text NOT NULL,
        cursor            bigint NOT NULL DEFAULT 0 CHECK (cursor >= 0),
        paused            boolean NOT NULL DEFAULT false,
        generation        bigint NOT NULL DEFAULT 0,
        batch_first       bigint CHECK (batch_first >= 1),
        batch_last        bigint,
        attempts          integer NOT NULL DEFAULT 0,
        last_error        text,
        last_error_at     timestamptz,
        last_delivered_at timestamptz,
        created_at        timestamptz NOT NULL DEFAULT now(),
        updated_at        timestamptz NOT NULL DEFAULT now(),
        CHECK ((batch_first IS NULL) = (batch_last IS NULL) AND (batch_first IS NULL OR batch_first <= batch_last))
    )$q$, s);
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.sink_jobs (
        sink             text PRIMARY KEY REFERENCES %I.sink_cursors (name) ON DELETE CASCADE,
        run              bigint NOT NULL DEFAULT 0,
        last_started_at  timestamptz,
        last_finished_at timestamptz,
        next_cursor      bigint NOT NULL DEFAULT 0,
        upto             bigint,
        finished         boolean NOT NULL DEFAULT true
    )$q$, s, s);
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.sink_requests (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sink         text NOT NULL,
        action       text NOT NULL CHECK (action IN ('replay', 'pause', 'resume', 'rebroadcast', 'forget')),
        from_cursor  bigint CHECK (from_cursor >= 0),
        requested_at timestamptz NOT NULL DEFAULT now(),
        applied_at   timestamptz,
        outcome      text
    )$q$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS sink_requests_pending ON %I.sink_requests (id) WHERE applied_at IS NULL', s);
END
$fn$;

CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v5(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tidemark.ensure_instance_schema_v4(s);
    PERFORM tidemark.create_sink_tables_v5(s);
END
$fn$;
