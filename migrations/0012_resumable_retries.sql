-- filegate schema 12: a resumable upload's completion survives a provider outage and the death of
-- the replica completing it; its creation counts the tenant's share of a shared account.
--
-- Every byte of a tus upload has arrived once its completion begins: no client request can start it
-- again (tus-js-client, after a failed last PATCH, asks HEAD, sees the whole offset and reports
-- success). So a completion that fails in a way waiting can cure (the provider failing, timing out or
-- rate limiting, its circuit open, the database or the originals store unreachable) leaves the upload
-- `processing` with its bytes, its last error and a count of attempts, and the `resumable` job takes
-- it up again once `next_attempt_at` has passed: the delay doubles with each attempt from
-- RESUMABLE_RETRY_SECONDS, at most an hour, until it succeeds or the upload expires. The same job
-- takes over a completion whose holder died (its lease ran out), tus or OpenAI, the OpenAI one with
-- the part order and md5 it was begun with. The upload's lease keeps each completion to one holder
-- across replicas, as before.

alter table resumable_uploads add column if not exists attempts integer not null default 0;
alter table resumable_uploads add column if not exists next_attempt_at timestamptz;
alter table resumable_uploads add column if not exists part_md5 text;
do $$
begin
  if not exists (select 1 from pg_constraint where conname = 'resumable_part_md5') then
    alter table resumable_uploads add constraint resumable_part_md5 check (part_md5 ~ '^[0-9a-f]{32}$');
  end if;
end
$$;

-- The job's question: completions to take up (bytes all in, no live holder, their next attempt due).
create index if not exists resumable_uploads_processing
  on resumable_uploads (next_attempt_at) where status = 'processing';

-- 0011's had no md5: with a new argument it is another function, and keeping both would make calls
-- by name ambiguous.
drop function if exists begin_resumable_completion(uuid, uuid, jsonb);

-- Under the lease: the segments to read, in order, and the upload marked processing, one more
-- attempt counted. tus: every segment by offset, and all bytes received. OpenAI: the parts named by
-- p_part_ids in that order, and p_md5 (lower-case hex) when given; a completion taken over keeps the
-- order and md5 it was begun with. The last error stays visible until the upload completes.
-- Outcomes: processing (with `segments`), invalid (`reason`), or lost (the lease is gone).
create or replace function begin_resumable_completion(
  p_id uuid, p_token uuid, p_part_ids jsonb default null, p_md5 text default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  u resumable_uploads;
  v_order jsonb;
  v_segments jsonb;
  v_total bigint;
  v_found integer;
begin
  select * into u from resumable_uploads where id = p_id and lock_token = p_token for update;
  if not found then return jsonb_build_object('outcome', 'lost'); end if;
  if u.protocol = 'tus' then
    if u.received <> u.bytes then
      return jsonb_build_object('outcome', 'invalid', 'reason', 'not every byte has arrived');
    end if;
    select coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'bytes', s.bytes) order by s.position), '[]'::jsonb),
           coalesce(sum(s.bytes), 0)
      into v_segments, v_total
      from resumable_segments s where s.upload_id = p_id;
  else
    v_order := coalesce(u.part_order, p_part_ids -> 'ids');
    if v_order is null or jsonb_typeof(v_order) <> 'array' or jsonb_array_length(v_order) = 0 then
      return jsonb_build_object('outcome', 'invalid', 'reason', 'part_ids must name the parts in order');
    end if;
    if (select count(distinct e) from jsonb_array_elements_text(v_order) e) <> jsonb_array_length(v_order) then
      return jsonb_build_object('outcome', 'invalid', 'reason', 'a part is named twice in part_ids');
    end if;
    select count(*), coalesce(sum(s.bytes), 0),
           coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'bytes', s.bytes) order by o.n), '[]'::jsonb)
      into v_found, v_total, v_segments
      from jsonb_array_elements_text(v_order) with ordinality as o(part, n)
      join resumable_segments s on s.upload_id = p_id and s.id::text = o.part;
    if v_found <> jsonb_array_length(v_order) then
      return jsonb_build_object('outcome', 'invalid', 'reason', 'part_ids names a part this upload does not have');
    end if;
  end if;
  if v_total <> u.bytes then
    return jsonb_build_object('outcome', 'invalid',
      'reason', format('the parts hold %s bytes, the upload declared %s', v_total, u.bytes));
  end if;
  update resumable_uploads
     set status = 'processing', part_order = v_order,
         part_md5 = case when status = 'processing' then part_md5 else lower(p_md5) end,
         attempts = attempts + 1, next_attempt_at = null, updated_at = now()
   where id = p_id
  returning * into u;
  return jsonb_build_object('outcome', 'processing', 'segments', v_segments, 'upload', filegate_resumable_json(u));
end
$$;

-- Lets go of the lease; a completion that failed in a way the client may retry goes back to
-- receiving with its error noted (OpenAI: the SDK retries a complete, with the part order and md5 it
-- names then).
create or replace function release_resumable_lock(
  p_id uuid, p_token uuid, p_error text default null, p_error_code text default null
) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads
       set lock_token = null, locked_until = null, updated_at = now(),
           status = case when status = 'processing' then 'receiving' else status end,
           part_order = case when status = 'processing' then null else part_order end,
           part_md5 = case when status = 'processing' then null else part_md5 end,
           error = coalesce(p_error, error), error_code = coalesce(p_error_code, error_code)
     where id = p_id and lock_token = p_token
    returning *
  )
  select filegate_resumable_json(u) from u
$$;

-- A completion failed in a way waiting can cure: the upload stays processing with its bytes, the
-- lease is let go, the error noted, and the next attempt is due after p_base_seconds doubled for
-- each attempt made but the first, at most an hour. Null when the lease was lost meanwhile.
create or replace function defer_resumable_completion(
  p_id uuid, p_token uuid, p_error text, p_error_code text, p_base_seconds integer
) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads
       set lock_token = null, locked_until = null, updated_at = now(), error = p_error, error_code = p_error_code,
           next_attempt_at = now() + make_interval(secs =>
             least(3600, p_base_seconds::double precision * power(2, least(greatest(attempts - 1, 0), 20))))
     where id = p_id and lock_token = p_token and status = 'processing'
    returning *
  )
  select filegate_resumable_json(u) from u
$$;

-- The file is recorded: the upload is completed (its staged bytes are removed next).
create or replace function finish_resumable_upload(p_id uuid, p_token uuid, p_file_id uuid) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads
       set status = 'completed', file_id = p_file_id, lock_token = null, locked_until = null,
           updated_at = now(), error = null, error_code = null, next_attempt_at = null
     where id = p_id and lock_token = p_token
    returning *
  )
  select filegate_resumable_json(u) from u
$$;

-- Claims up to p_limit completions to take up: processing, not expired, no live holder (a deferred
-- one, or one whose holder died), the next attempt due. Each is held under a fresh lease (SKIP
-- LOCKED: a replica never takes one another holds). Returns [{token, upload (with its segments)}].
create or replace function claim_resumable_completions(p_limit integer, p_lease_seconds integer) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare v jsonb;
begin
  with c as (
    select id from resumable_uploads
     where status = 'processing' and expires_at > now()
       and (locked_until is null or locked_until <= now())
       and (next_attempt_at is null or next_attempt_at <= now())
     order by coalesce(next_attempt_at, updated_at)
     limit p_limit
     for update skip locked
  ), h as (
    update resumable_uploads u
       set lock_token = gen_random_uuid(), locked_until = now() + make_interval(secs => p_lease_seconds),
           updated_at = now()
      from c where u.id = c.id
    returning u.*
  )
  select coalesce(jsonb_agg(jsonb_build_object('token', h.lock_token,
                                               'upload', filegate_resumable_json(h::resumable_uploads))), '[]'::jsonb)
    into v from h;
  return v;
end
$$;

-- As in 0011, and a processing upload whose expiry passed with no live holder fails with its last
-- error (counted: `failed` lists their protocols).
create or replace function claim_resumable_removals(p_limit integer, p_lease_seconds integer) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  v jsonb;
  v_expired jsonb;
  v_failed jsonb;
begin
  with e as (
    update resumable_uploads set status = 'expired', updated_at = now(), lock_token = null, locked_until = null
     where status = 'receiving' and expires_at <= now()
    returning protocol
  )
  select coalesce(jsonb_agg(protocol), '[]'::jsonb) into v_expired from e;
  with f as (
    update resumable_uploads
       set status = 'failed', updated_at = now(), lock_token = null, locked_until = null, next_attempt_at = null,
           error = format('the upload expired before its completion succeeded (%s attempts)%s', attempts,
                          coalesce(': ' || error, '')),
           error_code = coalesce(error_code, 'INTERNAL')
     where status = 'processing' and expires_at <= now() and (locked_until is null or locked_until <= now())
    returning protocol
  )
  select coalesce(jsonb_agg(protocol), '[]'::jsonb) into v_failed from f;
  with c as (
    select id from resumable_uploads
     where staged_removed_at is null and status not in ('receiving', 'processing')
       and (locked_until is null or locked_until <= now())
     order by updated_at
     limit p_limit
     for update skip locked
  ), h as (
    update resumable_uploads u
       set lock_token = gen_random_uuid(), locked_until = now() + make_interval(secs => p_lease_seconds)
      from c where u.id = c.id
    returning u.id, u.lock_token as token, u.protocol, u.status
  )
  select coalesce(jsonb_agg(to_jsonb(h)), '[]'::jsonb) into v from h;
  return jsonb_build_object('expired', v_expired, 'failed', v_failed, 'claimed', v);
end
$$;

-- The dry run's view: what the job would remove now (a processing upload past its expiry with no live
-- holder included: the job fails it first).
create or replace function find_resumable_removals(p_limit integer) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'protocol', protocol, 'status', status)), '[]'::jsonb)
    from (select id, protocol, status from resumable_uploads
           where (staged_removed_at is null and status not in ('receiving', 'processing'))
              or (status = 'receiving' and expires_at <= now())
              or (status = 'processing' and expires_at <= now() and (locked_until is null or locked_until <= now()))
           order by updated_at limit p_limit) c
$$;

-- ----------------------------------------------------------------------------------------
-- The tenant's caps at creation

-- The caps that apply to a tenant at a provider, as claim_upload (0009) decides them: its own caps
-- always; for a cap it has none of, its share of the account's while the account is shared
-- (p_shared, or another tenant has a row). {max_files, max_bytes}, null = no cap. claim_upload
-- applies it inline (0009 is not redefined here); a migration that redefines it calls this.
create or replace function filegate_tenant_caps(
  p_tenant_id text, p_tenant_max_files bigint, p_tenant_max_bytes bigint,
  p_share_max_files bigint, p_share_max_bytes bigint, p_shared boolean
) returns jsonb
language sql stable as $$
  select case
    when (p_share_max_files is not null or p_share_max_bytes is not null)
         and (p_tenant_max_files is null or p_tenant_max_bytes is null)
         and tenant_account_shared(p_tenant_id, p_shared)
    then jsonb_build_object('max_files', coalesce(p_tenant_max_files, p_share_max_files),
                            'max_bytes', coalesce(p_tenant_max_bytes, p_share_max_bytes))
    else jsonb_build_object('max_files', p_tenant_max_files, 'max_bytes', p_tenant_max_bytes)
  end
$$;

-- 0011's took the tenant's own caps only: with the share arguments it is another function, and
-- keeping both would make calls by name ambiguous.
drop function if exists create_resumable_upload(text, text, text, text, text, bigint, integer, text, jsonb, integer,
                                                text, integer, bigint);

-- Creates an upload. At a named provider, what the tenant occupies there (as claim_upload counts
-- it) plus the declared bytes of its uploads still receiving or processing there, plus this one,
-- must fit the caps that apply to it (filegate_tenant_caps: its own, else its share of a shared
-- account): else `tenant_quota_exceeded` with its own figures (same advisory lock as claim_upload).
create or replace function create_resumable_upload(
  p_tenant_id text, p_protocol text, p_provider text, p_filename text, p_mime_type text, p_bytes bigint,
  p_ttl_seconds integer, p_purpose text default null, p_metadata jsonb default '{}'::jsonb,
  p_file_expires_in integer default null, p_sha256 text default null,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null,
  p_share_max_files integer default null, p_share_max_bytes bigint default null, p_shared boolean default false
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  u resumable_uploads;
  v_caps jsonb := filegate_tenant_caps(p_tenant_id, p_tenant_max_files, p_tenant_max_bytes,
                                       p_share_max_files, p_share_max_bytes, p_shared);
  v_max_files bigint := (v_caps ->> 'max_files')::bigint;
  v_max_bytes bigint := (v_caps ->> 'max_bytes')::bigint;
  v_files bigint;
  v_bytes bigint;
begin
  if v_max_files is not null or v_max_bytes is not null then
    perform pg_advisory_xact_lock(hashtext('filegate:tenant-quota:' || p_provider || ':' || p_tenant_id));
    select count(*) + coalesce((select count(*) from resumable_uploads r
                                 where r.tenant_id = p_tenant_id and r.provider = p_provider
                                   and r.status in ('receiving', 'processing')), 0),
           coalesce(sum(f.bytes), 0) + coalesce((select sum(r.bytes) from resumable_uploads r
                                                  where r.tenant_id = p_tenant_id and r.provider = p_provider
                                                    and r.status in ('receiving', 'processing')), 0)
      into v_files, v_bytes
      from provider_file_uploads f
     where f.tenant_id = p_tenant_id and f.provider = p_provider and f.provider_deleted = false
       and filegate_occupies_provider(f);
    if (v_max_files is not null and v_files + 1 > v_max_files)
       or (v_max_bytes is not null and v_bytes + p_bytes > v_max_bytes) then
      return jsonb_build_object('outcome', 'tenant_quota_exceeded', 'files', v_files, 'bytes', v_bytes,
                                'max_files', v_max_files, 'max_bytes', v_max_bytes);
    end if;
  end if;
  insert into resumable_uploads (tenant_id, protocol, provider, purpose, filename, mime_type, bytes, metadata,
                                 file_expires_in, sha256, expires_at)
  values (p_tenant_id, p_protocol, p_provider, p_purpose, p_filename, p_mime_type, p_bytes,
          coalesce(p_metadata, '{}'::jsonb), p_file_expires_in, p_sha256,
          now() + make_interval(secs => p_ttl_seconds))
  returning * into u;
  return jsonb_build_object('outcome', 'created', 'upload', filegate_resumable_json(u));
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(12) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in (
         'begin_resumable_completion', 'release_resumable_lock', 'defer_resumable_completion',
         'finish_resumable_upload', 'claim_resumable_completions', 'claim_resumable_removals',
         'find_resumable_removals', 'filegate_tenant_caps', 'create_resumable_upload')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
