-- Per-instance tables, layout version 4: compact events.
--
-- Hashes, addresses, topics and data are stored as `bytea` (32 bytes for a hash where
-- layout 3 stored 66 characters of hex text), the contract, event and signature names
-- once per event type in `event_types`, referenced from each row by id. What readers get
-- is unchanged: the db-client writes hex strings and names back into every page, and the
-- journal's entries (the `journal` view, the `removals` payloads) keep the keys and hex
-- strings of layout 3 (`tidemark.event_json`).
--
-- The duplicate guard is `events_chain_block`, unique `(chain_id, block_number, log_index)`
-- (layouts 1 to 3: `(chain_id, block_hash, log_index)`, and a separate index on
-- `(chain_id, block_number)`). `events` holds canonical logs only, and a reorg removes the
-- orphaned block's logs before the new block's are stored, so no two stored logs share a
-- chain, block number and log index: the guard is stronger than the one it replaces (a
-- block hash has one number), its keys arrive in order during a backfill (an appended
-- B-tree instead of one filled at random by hashes), and it serves the writer's rollback
-- and block ranges, which the separate index did.
--
-- A type also records the first topic of its first stored log (`topic0`: for an event that
-- is not anonymous, the hash of its signature, which every log of the type carries). A row
-- stores `topic0` only where it differs; NULL means the type's (every stored log has a
-- first topic: the indexer stores logs by their first topic).
--
-- `event_types` ids are assigned in insertion order and never change or go away. Each row
-- of `events` carries three of them: `type_id` (its contract, event and signature),
-- `contract_id` (the lowest id of its contract's types) and `event_id` (the lowest id of
-- its contract's types of that event name, overloads included), so that a `contract` or a
-- `contract` + `event` filter is one key of one index, read in cursor order.
--
-- Creates a v4 instance, or upgrades an instance of layout 1 to 3 in place: its own
-- upgrades first (`ensure_instance_schema_v3`), then `events` is rewritten in the new
-- layout in the same transaction (`tidemark.convert_events_v4`); cursors, removals and
-- every other table are kept as they are.

-- One stored event as the journal's JSON payload: the keys and hex strings of layout 3's
-- row (`to_jsonb(events)`), `topics` as an array of the topics present (`topic0` resolved:
-- the row's, else its type's).
CREATE OR REPLACE FUNCTION tidemark.event_json(
    cursor bigint, chain_id bigint, block_number bigint, block_hash bytea, block_timestamp bigint,
    tx_hash bytea, tx_index integer, log_index integer, address bytea, contract text, event text,
    signature text, topic0 bytea, topic1 bytea, topic2 bytea, topic3 bytea, data bytea, args jsonb,
    decode_error text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT jsonb_build_object(
        'cursor', cursor, 'chain_id', chain_id, 'block_number', block_number,
        'block_hash', '0x' || encode(block_hash, 'hex'), 'block_timestamp', block_timestamp,
        'tx_hash', '0x' || encode(tx_hash, 'hex'), 'tx_index', tx_index, 'log_index', log_index,
        'address', '0x' || encode(address, 'hex'), 'contract', contract, 'event', event,
        'signature', signature,
        'topics', to_jsonb(array_remove(ARRAY['0x' || encode(topic0, 'hex'), '0x' || encode(topic1, 'hex'),
                                              '0x' || encode(topic2, 'hex'), '0x' || encode(topic3, 'hex')], NULL)),
        'data', '0x' || encode(data, 'hex'), 'args', args, 'decode_error', decode_error)
$fn$;

-- Rewrites a layout-3 `events` table of instance `s` in layout 4, keeping every row and
-- cursor. Runs inside the caller's transaction, with the table locked: readers wait for
-- the rewrite, which takes about as long as copying the table once.
CREATE OR REPLACE FUNCTION tidemark.convert_events_v4(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    ix text;
BEGIN
    EXECUTE format('LOCK TABLE %I.events IN ACCESS EXCLUSIVE MODE', s);
    EXECUTE format('DROP VIEW IF EXISTS %I.journal', s);
    EXECUTE format('ALTER TABLE %I.events RENAME TO events_v3', s);
    -- Free the names of its constraints and indexes for the new table.
    EXECUTE format('ALTER TABLE %I.events_v3 DROP CONSTRAINT IF EXISTS events_pkey, '
                   'DROP CONSTRAINT IF EXISTS events_chain_id_block_hash_log_index_key', s);
    FOREACH ix IN ARRAY ARRAY['events_chain_block', 'events_contract_event', 'events_address', 'events_tx',
                              'events_topic1', 'events_topic2', 'events_topic3', 'events_chain_cursor',
                              'events_contract_cursor'] LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I.%I', s, ix);
    END LOOP;

    PERFORM tidemark.create_event_tables_v4(s);
    EXECUTE format($q$INSERT INTO %1$I.event_types (contract, event, signature, topic0)
        SELECT contract, event, signature, decode(substr(min(topics[1]), 3), 'hex')
          FROM %1$I.events_v3 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING$q$, s);
    EXECUTE format($q$WITH types AS (
            SELECT id, contract, event, signature, topic0,
                   min(id) OVER (PARTITION BY contract) AS contract_id,
                   min(id) OVER (PARTITION BY contract, event) AS event_id
              FROM %1$I.event_types)
        INSERT INTO %1$I.events
        SELECT o.cursor, o.chain_id, o.block_number, o.block_timestamp, o.tx_index, o.log_index,
               t.contract_id, t.event_id, t.id,
               decode(substr(o.block_hash, 3), 'hex'), decode(substr(o.tx_hash, 3), 'hex'),
               decode(substr(o.address, 3), 'hex'),
               nullif(decode(substr(o.topics[1], 3), 'hex'), t.topic0), decode(substr(o.topics[2], 3), 'hex'),
               decode(substr(o.topics[3], 3), 'hex'), decode(substr(o.topics[4], 3), 'hex'),
               decode(substr(o.data, 3), 'hex'), o.args, o.decode_error
          FROM %1$I.events_v3 o JOIN types t USING (contract, event, signature)
         ORDER BY o.cursor$q$, s);
    EXECUTE format('DROP TABLE %I.events_v3', s);
END
$fn$;

-- The v4 `event_types` and `events` tables, if missing, without the constraints and
-- indexes of `events` (`ensure_instance_schema_v4` adds them: after the rows, on an
-- upgrade, so that each is built once instead of maintained row by row).
CREATE OR REPLACE FUNCTION tidemark.create_event_tables_v4(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.event_types (
        id        integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        contract  text NOT NULL,
        event     text NOT NULL,
        signature text NOT NULL,
        topic0    bytea,
        UNIQUE (contract, event, signature)
    )$q$, s);
    -- Canonical logs, fixed-width columns first. A row is the journal's `log` entry for
    -- that log.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.events (
        cursor          bigint  NOT NULL,
        chain_id        bigint  NOT NULL,
        block_number    bigint  NOT NULL,
        block_timestamp bigint  NOT NULL,
        tx_index        integer NOT NULL,
        log_index       integer NOT NULL,
        contract_id     integer NOT NULL,
        event_id        integer NOT NULL,
        type_id         integer NOT NULL,
        block_hash      bytea   NOT NULL,
        tx_hash         bytea   NOT NULL,
        address         bytea   NOT NULL,
        topic0          bytea,
        topic1          bytea,
        topic2          bytea,
        topic3          bytea,
        data            bytea   NOT NULL,
        args            jsonb,
        decode_error    text
    )$q$, s);
END
$fn$;

CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v4(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF s !~ '^[a-z_][a-z0-9_]{0,62}$' OR s LIKE 'pg\_%' OR s IN ('public', 'tidemark', 'information_schema') THEN
        RAISE EXCEPTION 'invalid instance schema name: %', s;
    END IF;
    -- An instance of layout 1 to 3: its own upgrades first, then the rewrite.
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = s AND table_name = 'events' AND column_name = 'signature') THEN
        PERFORM tidemark.ensure_instance_schema_v3(s);
        PERFORM tidemark.convert_events_v4(s);
    END IF;

    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    -- One sequence for every journal entry (events and removals): cursor order is commit
    -- order because committers take a transaction-level advisory lock before drawing.
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I.cursor_seq', s);
    PERFORM tidemark.create_event_tables_v4(s);
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(format('%I.events', s))
                                                 AND conname = 'events_pkey') THEN
        EXECUTE format('ALTER TABLE %I.events ADD CONSTRAINT events_pkey PRIMARY KEY (cursor), '
                       'ADD CONSTRAINT events_chain_block UNIQUE (chain_id, block_number, log_index)', s);
    END IF;
    -- Secondary indexes (the API's filters): built here unless the instance deferred
    -- them to the end of its first backfill (migration `deferred_indexes`). The names are
    -- those of layout 3. A topic's index holds the rows that have that topic.
    IF NOT tidemark.indexes_deferred(s) THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_contract_event ON %I.events (event_id, cursor)', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_address ON %I.events (address, cursor)', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_tx ON %I.events (tx_hash)', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_topic1 ON %I.events (topic1, cursor) WHERE topic1 IS NOT NULL', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_topic2 ON %I.events (topic2, cursor) WHERE topic2 IS NOT NULL', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_topic3 ON %I.events (topic3, cursor) WHERE topic3 IS NOT NULL', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_chain_cursor ON %I.events (chain_id, cursor)', s);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_contract_cursor ON %I.events (contract_id, cursor)', s);
    END IF;

    -- Logs removed by reorgs: the journal's `removed` entries, with the removed row as
    -- `tidemark.event_json` renders it.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.removals (
        cursor       bigint      PRIMARY KEY,
        chain_id     bigint      NOT NULL,
        block_number bigint      NOT NULL,
        block_hash   text        NOT NULL,
        log_index    integer     NOT NULL,
        event_cursor bigint      NOT NULL,
        payload      jsonb       NOT NULL,
        removed_at   timestamptz NOT NULL DEFAULT now()
    )$q$, s);

    -- The change log streams and sinks read. Replaying it in cursor order (add on `log`,
    -- delete on `removed`) yields exactly the stored events; no event is written twice.
    EXECUTE format($q$CREATE OR REPLACE VIEW %1$I.journal AS
        SELECT e.cursor, 'log'::text AS kind, e.chain_id, e.block_number,
               '0x' || encode(e.block_hash, 'hex') AS block_hash, e.log_index, e.cursor AS event_cursor,
               tidemark.event_json(e.cursor, e.chain_id, e.block_number, e.block_hash, e.block_timestamp,
                   e.tx_hash, e.tx_index, e.log_index, e.address, t.contract, t.event, t.signature,
                   coalesce(e.topic0, t.topic0), e.topic1, e.topic2, e.topic3, e.data, e.args, e.decode_error) AS payload
          FROM %1$I.events e JOIN %1$I.event_types t ON t.id = e.type_id
        UNION ALL
        SELECT r.cursor, 'removed'::text, r.chain_id, r.block_number, r.block_hash, r.log_index,
               r.event_cursor, r.payload
          FROM %1$I.removals r$q$, s);

    -- Hashes of the unfinalized window per chain, for reorg detection.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.blocks (
        chain_id    bigint NOT NULL,
        number      bigint NOT NULL,
        hash        text   NOT NULL,
        parent_hash text   NOT NULL,
        timestamp   bigint NOT NULL,
        PRIMARY KEY (chain_id, number)
    )$q$, s);

    -- Last indexed block per chain, written in the same transaction as its data.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.checkpoints (
        chain_id        bigint      PRIMARY KEY,
        block_number    bigint      NOT NULL,
        block_hash      text        NOT NULL,
        block_timestamp bigint      NOT NULL,
        updated_at      timestamptz NOT NULL DEFAULT now()
    )$q$, s);

    -- Per-batch processing stages (DESIGN §8).
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.epochs (
        chain_id   bigint      NOT NULL,
        epoch_id   bigint      NOT NULL,
        from_block bigint      NOT NULL,
        to_block   bigint      NOT NULL,
        stage      text        NOT NULL,
        stages     jsonb       NOT NULL DEFAULT '[]',
        error      text,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (chain_id, epoch_id)
    )$q$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS epochs_stage ON %I.epochs (chain_id, stage)', s);
END
$fn$;
