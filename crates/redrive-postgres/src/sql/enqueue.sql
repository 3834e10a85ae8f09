-- Migration 2: transactional enqueue.
--
--   SELECT redrive.enqueue('emails', '{"to":"a@example.com"}', '{"priority":"high"}');
--
-- An application calls it inside its own transaction: the job exists if and only if that
-- transaction commits, and the NOTIFY that wakes long polls on every server fires at commit.
-- It writes exactly the rows the servers' enqueue writes (crates/redrive-postgres/src/enqueue.rs):
-- the same UUIDv7 ids, idempotency keys claimed in redrive.dedup, the same totals, and the same
-- bounds (crates/redrive-core/src/limits.rs), refused with SQLSTATE 22023 (invalid input),
-- 54000 (body over the queue's max_message_bytes) or P0002 (no such queue).
--
-- Released migrations are never edited: a change to this function is a new migration.

-- A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7, the variant, random bits: the
-- scheme the servers use, so ids sort by creation time whoever made them.
CREATE FUNCTION redrive.uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
           PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
           FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- Returns the job's id; for an idempotency key seen within the queue's dedup window, the id of
-- the first job (no job is added). Options: priority ('high' | 'standard' | 'low'), delay_ms,
-- idempotency_key, attributes (an object of strings), max_attempts, group, traceparent.
--
-- Totals go to shards 8..71 of redrive.queue_totals (the servers use 0..7, readers sum them
-- all), picked by backend: the row lock of a shard is held until the caller commits, so an
-- application's long transaction never holds up the servers' enqueues, and two applications'
-- transactions meet on a shard only by chance.
--
-- SECURITY DEFINER with a fixed search_path: an application's role needs only EXECUTE on this
-- function (and USAGE on schema redrive), not rights on the tables.
CREATE FUNCTION redrive.enqueue(queue text, body text, options jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  o jsonb := coalesce(options, '{}'::jsonb);
  v_now bigint := redrive.now_ms();
  q record;
  v_unknown text;
  v_priority smallint := 1;
  v_delay numeric;
  v_max_attempts numeric;
  v_key text;
  v_group text;
  v_traceparent text;
  v_attrs jsonb;
  v_attr record;
  v_window bigint;
  v_visible bigint;
  v_id uuid := redrive.uuid_v7();
  v_claimed uuid;
  v_shard smallint := (8 + pg_backend_pid() % 64)::smallint;
BEGIN
  IF jsonb_typeof(o) <> 'object' THEN
    RAISE EXCEPTION 'redrive.enqueue: options must be a JSON object' USING ERRCODE = '22023';
  END IF;
  SELECT k INTO v_unknown FROM jsonb_object_keys(o) AS k
   WHERE k NOT IN ('priority', 'delay_ms', 'idempotency_key', 'attributes', 'max_attempts',
                   'group', 'traceparent')
   LIMIT 1;
  IF v_unknown IS NOT NULL THEN
    RAISE EXCEPTION 'redrive.enqueue: unknown option %', quote_literal(v_unknown)
      USING ERRCODE = '22023',
            HINT = 'options: priority, delay_ms, idempotency_key, attributes, max_attempts, group, traceparent';
  END IF;
  SELECT id, config INTO q FROM redrive.queues WHERE name = enqueue.queue;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'redrive.enqueue: no queue named %', quote_literal(enqueue.queue)
      USING ERRCODE = 'P0002';
  END IF;
  IF enqueue.body IS NULL THEN
    RAISE EXCEPTION 'redrive.enqueue: body must not be null' USING ERRCODE = '22023';
  END IF;
  IF octet_length(enqueue.body) > (q.config->>'max_message_bytes')::bigint THEN
    RAISE EXCEPTION 'redrive.enqueue: message of % bytes is over the limit of % bytes (max_message_bytes)',
      octet_length(enqueue.body), q.config->>'max_message_bytes' USING ERRCODE = '54000';
  END IF;

  -- The checks of NewJob::check_fields, in its order and with its words.
  IF o ? 'group' THEN
    IF jsonb_typeof(o->'group') <> 'string' THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid group: a string' USING ERRCODE = '22023';
    END IF;
    v_group := o->>'group';
    IF octet_length(v_group) NOT BETWEEN 1 AND 128 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid group: 1 to 128 bytes' USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'idempotency_key' THEN
    IF jsonb_typeof(o->'idempotency_key') <> 'string' THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid idempotency_key: a string' USING ERRCODE = '22023';
    END IF;
    v_key := o->>'idempotency_key';
    IF octet_length(v_key) NOT BETWEEN 1 AND 128 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid idempotency_key: 1 to 128 bytes' USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'traceparent' THEN
    IF jsonb_typeof(o->'traceparent') <> 'string' THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid traceparent: a string' USING ERRCODE = '22023';
    END IF;
    v_traceparent := o->>'traceparent';
    IF octet_length(v_traceparent) > 128 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid traceparent: at most 128 bytes' USING ERRCODE = '22023';
    END IF;
  END IF;
  v_attrs := coalesce(o->'attributes', '{}'::jsonb);
  IF jsonb_typeof(v_attrs) <> 'object' THEN
    RAISE EXCEPTION 'redrive.enqueue: invalid attributes: an object of strings' USING ERRCODE = '22023';
  END IF;
  IF v_attrs ? 'redrive:group' THEN
    RAISE EXCEPTION 'redrive.enqueue: invalid attributes: "redrive:group" is reserved; set the job''s group with "group"'
      USING ERRCODE = '22023';
  END IF;
  IF (SELECT count(*) FROM jsonb_object_keys(v_attrs)) > 32 THEN
    RAISE EXCEPTION 'redrive.enqueue: invalid attributes: at most 32 attributes' USING ERRCODE = '22023';
  END IF;
  FOR v_attr IN SELECT key, value FROM jsonb_each(v_attrs) LOOP
    IF jsonb_typeof(v_attr.value) <> 'string' THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid attributes: values are strings (%)', quote_literal(v_attr.key)
        USING ERRCODE = '22023';
    END IF;
    IF octet_length(v_attr.key) NOT BETWEEN 1 AND 256 OR octet_length(v_attr.value #>> '{}') > 4096 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid attributes: keys 1 to 256 bytes, values at most 4096 bytes'
        USING ERRCODE = '22023';
    END IF;
  END LOOP;
  IF o ? 'max_attempts' THEN
    v_max_attempts := CASE WHEN jsonb_typeof(o->'max_attempts') = 'number'
                           THEN (o->>'max_attempts')::numeric END;
    IF v_max_attempts IS NULL OR v_max_attempts <> trunc(v_max_attempts)
       OR v_max_attempts NOT BETWEEN 1 AND 1000 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid max_attempts: 1 to 1000' USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'priority' THEN
    v_priority := CASE o->>'priority' WHEN 'high' THEN 0 WHEN 'standard' THEN 1 WHEN 'low' THEN 2 END;
    IF v_priority IS NULL OR jsonb_typeof(o->'priority') <> 'string' THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid priority: "high", "standard" or "low"' USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'delay_ms' THEN
    v_delay := CASE WHEN jsonb_typeof(o->'delay_ms') = 'number' THEN (o->>'delay_ms')::numeric END;
    IF v_delay IS NULL OR v_delay <> trunc(v_delay) OR v_delay < 0 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid delay_ms: a whole number of milliseconds' USING ERRCODE = '22023';
    END IF;
    IF v_delay > 31536000000 THEN
      RAISE EXCEPTION 'redrive.enqueue: invalid delay_ms: at most 31536000000' USING ERRCODE = '22023';
    END IF;
  END IF;

  -- A FIFO queue orders by enqueue time alone.
  IF (q.config->>'fifo')::boolean THEN
    v_priority := 1;
  END IF;
  v_visible := v_now + coalesce(v_delay::bigint, (q.config->>'delay_ms')::bigint);
  v_window := (q.config->>'dedup_window_ms')::bigint;

  IF v_key IS NOT NULL AND v_window > 0 THEN
    -- Waits for a concurrent transaction holding the same key: its commit makes this one a
    -- duplicate, its rollback lets this one claim the key.
    INSERT INTO redrive.dedup AS x (queue_id, key, job_id, expires_at)
    VALUES (q.id, v_key, v_id, v_now + v_window)
    ON CONFLICT (queue_id, key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
      WHERE x.expires_at <= redrive.now_ms()
    RETURNING x.job_id INTO v_claimed;
    IF v_claimed IS NULL THEN
      INSERT INTO redrive.queue_totals AS t (queue_id, shard, duplicates) VALUES (q.id, v_shard, 1)
      ON CONFLICT (queue_id, shard) DO UPDATE SET duplicates = t.duplicates + 1;
      SELECT d.job_id INTO v_claimed FROM redrive.dedup d WHERE d.queue_id = q.id AND d.key = v_key;
      RETURN v_claimed;
    END IF;
  END IF;

  INSERT INTO redrive.jobs (id, queue_id, state, priority, body, attributes, idempotency_key,
      group_id, traceparent, max_attempts, enqueued_at, visible_at, expires_at)
  VALUES (v_id, q.id, CASE WHEN v_visible > v_now THEN 0 ELSE 1 END, v_priority, enqueue.body,
      v_attrs, v_key, v_group, v_traceparent, v_max_attempts::integer, v_now, v_visible,
      v_now + (q.config->>'retention_ms')::bigint);
  INSERT INTO redrive.queue_totals AS t (queue_id, shard, enqueued) VALUES (q.id, v_shard, 1)
  ON CONFLICT (queue_id, shard) DO UPDATE SET enqueued = t.enqueued + 1;
  PERFORM pg_notify('redrive_ready', q.id::text);
  RETURN v_id;
END
$$;

REVOKE ALL ON FUNCTION redrive.enqueue(text, text, jsonb) FROM PUBLIC;
