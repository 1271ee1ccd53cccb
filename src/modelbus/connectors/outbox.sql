-- modelbus: PostgreSQL outbox tables and the trigger that turns inserts into events.
--
-- Run this file once per database (it is idempotent):
--     psql "$DATABASE_URL" -f outbox.sql
-- or print it with:
--     python -c "from modelbus.connectors.postgres import outbox_sql; print(outbox_sql())"
--
-- Then, per listener:
--     SELECT modelbus_create_outbox('documents_events');      -- the listener's outbox table
--     CREATE TRIGGER documents_to_events AFTER INSERT ON documents
--         FOR EACH ROW EXECUTE FUNCTION modelbus_capture('documents_events');
-- and declare the listener's source as postgresql://USER@HOST/DB?table=documents_events.
--
-- Every row inserted into `documents` becomes one event: its payload is the new row as JSON
-- (to_jsonb(NEW)), its attributes say where it came from ({"table": "public.documents",
-- "operation": "INSERT"}). Two listeners that both want every row get one outbox each: pass
-- several outbox names to modelbus_capture('a_events', 'b_events'), or add one trigger each.
-- An outbox is a queue: consumers of one outbox compete for its rows.

-- Wakes the consumers LISTENing on the outbox (once per INSERT statement, not per row).
CREATE OR REPLACE FUNCTION modelbus_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END;
$$;

-- Creates the outbox table NAME (schema-qualified or not) with its notify trigger; the
-- notification channel is the table's name as regclass::text prints it.
CREATE OR REPLACE FUNCTION modelbus_create_outbox(name text) RETURNS regclass
LANGUAGE plpgsql AS $$
DECLARE
    outbox regclass;
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %s ('
        '  id           bigserial PRIMARY KEY,'
        '  payload      bytea NOT NULL,'
        '  attributes   jsonb NOT NULL DEFAULT ''{}''::jsonb,'
        '  message_id   text,'
        '  created_at   timestamptz NOT NULL DEFAULT now(),'
        '  available_at timestamptz NOT NULL DEFAULT now(),'
        '  attempts     integer NOT NULL DEFAULT 0,'
        '  locked_until timestamptz,'
        '  locked_by    text'
        ')', name);
    outbox := name::regclass;
    EXECUTE format('DROP TRIGGER IF EXISTS modelbus_notify ON %s', outbox);
    EXECUTE format(
        'CREATE TRIGGER modelbus_notify AFTER INSERT ON %s '
        'FOR EACH STATEMENT EXECUTE FUNCTION modelbus_outbox_notify(%L)',
        outbox, outbox::text);
    RETURN outbox;
END;
$$;

-- Row trigger for a user table: copies each inserted row, as JSON, into every outbox named
-- in the trigger's arguments (in the same transaction as the insert).
CREATE OR REPLACE FUNCTION modelbus_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    outbox text;
    body bytea := convert_to(to_jsonb(NEW)::text, 'UTF8');
    attributes jsonb := jsonb_build_object(
        'table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'operation', TG_OP);
BEGIN
    FOREACH outbox IN ARRAY TG_ARGV LOOP
        EXECUTE format('INSERT INTO %s (payload, attributes) VALUES ($1, $2)', outbox::regclass)
            USING body, attributes;
    END LOOP;
    RETURN NULL;
END;
$$;
