-- filegate schema, version 1. Forward-only and idempotent: running it twice is a no-op,
-- so it can be applied by filegate's own runner and by `supabase db push` alike.
-- Every function returns jsonb so the three transports (PGlite, postgres, PostgREST .rpc())
-- hand the service the same shapes; each runs with timezone UTC so timestamps read alike.

create table if not exists provider_file_uploads (
  id                  uuid primary key default gen_random_uuid(),
  tenant_id           text not null check (length(tenant_id) between 1 and 64),
  provider            text not null check (length(provider) between 1 and 32),
  provider_file_id    text,
  purpose             text not null check (length(purpose) between 1 and 64),
  filename            text not null check (length(filename) between 1 and 255),
  mime_type           text not null default 'application/octet-stream',
  bytes               bigint not null check (bytes >= 0),
  sha256              text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  status              text not null default 'pending'
                        constraint upload_status check (status in ('pending', 'uploading', 'completed', 'failed', 'deleted')),
  error               text,
  metadata            jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now(),
  last_used_at        timestamptz not null default now(),
  expires_at          timestamptz,
  deleted_at          timestamptz,
  deletion_reason     text constraint deletion_reason_valid
                        check (deletion_reason in ('manual', 'expired', 'orphaned', 'quota', 'reconciled')),
  provider_deleted    boolean not null default false,
  -- bookkeeping
  provider_deleted_at timestamptz,
  delete_attempts     integer not null default 0,
  last_delete_error   text,
  next_delete_at      timestamptz,
  claim_token         uuid,
  constraint tombstone_consistent check ((status = 'deleted') = (deleted_at is not null)),
  constraint tombstone_has_reason check (deleted_at is null or deletion_reason is not null),
  constraint completed_has_provider_id check (status <> 'completed' or provider_file_id is not null)
);

-- Dedup: one live row per (tenant, provider, purpose, content). Tombstones do not count.
create unique index if not exists provider_file_uploads_dedup_key
  on provider_file_uploads (tenant_id, provider, purpose, sha256) where deleted_at is null;
-- GET /v1/files: newest first per tenant, keyset pagination on (created_at, id).
create index if not exists provider_file_uploads_tenant_created
  on provider_file_uploads (tenant_id, created_at desc, id desc);
-- Sweeps: each reads only its own small partial index.
create index if not exists provider_file_uploads_expires
  on provider_file_uploads (expires_at) where deleted_at is null and status = 'completed' and expires_at is not null;
create index if not exists provider_file_uploads_retention
  on provider_file_uploads (last_used_at) where deleted_at is null and status = 'completed' and expires_at is null;
create index if not exists provider_file_uploads_failed
  on provider_file_uploads (updated_at) where deleted_at is null and status = 'failed';
create index if not exists provider_file_uploads_in_flight
  on provider_file_uploads (updated_at) where status in ('pending', 'uploading');
create index if not exists provider_file_uploads_pending_deletes
  on provider_file_uploads (next_delete_at nulls first) where deleted_at is not null and provider_deleted = false;
-- Usage against account caps, and reconcile lookups by provider id.
create index if not exists provider_file_uploads_occupying
  on provider_file_uploads (provider) where provider_deleted = false;
create index if not exists provider_file_uploads_provider_file
  on provider_file_uploads (provider, provider_file_id) where provider_file_id is not null;

create table if not exists filegate_job_leases (
  job         text primary key,
  holder      text not null,
  acquired_at timestamptz not null default now(),
  expires_at  timestamptz not null
);

-- Supabase exposes public tables through PostgREST: with RLS on and no policy, only the
-- service role (BYPASSRLS) and the owner reach the rows. On plain Postgres it changes nothing
-- for the owner filegate connects as.
alter table provider_file_uploads enable row level security;
alter table filegate_job_leases enable row level security;

-- ----------------------------------------------------------------------------------------
-- Helpers

create or replace function filegate_file_json(r provider_file_uploads) returns jsonb
language sql immutable set timezone to 'UTC' as $$
  select to_jsonb(r) - 'claim_token' - 'next_delete_at'
$$;

-- Rows that occupy the provider account: in flight, live with a provider copy, or tombstoned
-- but not yet deleted at the provider.
create or replace function filegate_occupies_provider(r provider_file_uploads) returns boolean
language sql immutable as $$
  select not r.provider_deleted
     and (r.status in ('pending', 'uploading', 'completed') or r.provider_file_id is not null)
$$;

create or replace function provider_usage(p_provider text default null) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(jsonb_build_object('provider', provider, 'files', files, 'bytes', bytes)), '[]'::jsonb)
  from (
    select u.provider, count(*) as files, coalesce(sum(u.bytes), 0) as bytes
    from provider_file_uploads u
    where u.provider_deleted = false and filegate_occupies_provider(u)
      and (p_provider is null or u.provider = p_provider)
    group by u.provider
  ) s
$$;

-- ----------------------------------------------------------------------------------------
-- Uploads

-- Claims the right to upload (tenant, provider, purpose, sha256). Outcomes:
--   duplicate       a live completed row exists: last_used_at bumped, nothing to upload
--   claimed         this caller uploads; claim_token must be shown to complete/fail
--   in_progress     another caller is uploading it now: wait and claim again
--   quota_exceeded  the provider account cap would be broken (counted across tenants)
-- A failed row never blocks: it is tombstoned (orphaned) and a fresh row claimed.
-- An in-flight row untouched for p_stuck_minutes is taken over with a new token.
create or replace function claim_upload(
  p_tenant_id text, p_provider text, p_purpose text, p_sha256 text, p_bytes bigint,
  p_filename text, p_mime_type text, p_metadata jsonb default '{}'::jsonb,
  p_expires_at timestamptz default null, p_stuck_minutes integer default 30,
  p_max_files integer default null, p_max_bytes bigint default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  r provider_file_uploads;
  v_token uuid := gen_random_uuid();
  v_files bigint;
  v_bytes bigint;
begin
  -- The common case, a live duplicate, is answered without a row lock.
  r := filegate_touch_live_duplicate(p_tenant_id, array[p_provider], p_purpose, p_sha256);
  if r.id is not null then
    return jsonb_build_object('outcome', 'duplicate', 'file', filegate_file_json(r));
  end if;
  for attempt in 1..5 loop
    select * into r from provider_file_uploads
     where tenant_id = p_tenant_id and provider = p_provider and purpose = p_purpose
       and sha256 = p_sha256 and deleted_at is null
     for update;
    if found then
      if r.status = 'completed' then
        update provider_file_uploads set last_used_at = now() where id = r.id returning * into r;
        return jsonb_build_object('outcome', 'duplicate', 'file', filegate_file_json(r));
      elsif r.status = 'failed' then
        update provider_file_uploads
           set status = 'deleted', deleted_at = now(), deletion_reason = 'orphaned', updated_at = now(),
               provider_deleted = (provider_file_id is null), next_delete_at = null
         where id = r.id;
      elsif r.updated_at < now() - make_interval(mins => p_stuck_minutes) then
        update provider_file_uploads
           set claim_token = v_token, status = 'uploading', updated_at = now(), error = null,
               bytes = p_bytes, filename = p_filename, mime_type = p_mime_type,
               metadata = coalesce(p_metadata, '{}'::jsonb), expires_at = p_expires_at
         where id = r.id returning * into r;
        return jsonb_build_object('outcome', 'claimed', 'claim_token', v_token, 'taken_over', true,
                                  'file', filegate_file_json(r));
      else
        return jsonb_build_object('outcome', 'in_progress', 'file', filegate_file_json(r));
      end if;
    end if;

    if p_max_files is not null or p_max_bytes is not null then
      -- Serialise claims per provider so two replicas cannot both take the last slot.
      perform pg_advisory_xact_lock(hashtext('filegate:quota:' || p_provider));
      select count(*), coalesce(sum(u.bytes), 0) into v_files, v_bytes
        from provider_file_uploads u
       where u.provider = p_provider and u.provider_deleted = false and filegate_occupies_provider(u);
      if (p_max_files is not null and v_files + 1 > p_max_files)
         or (p_max_bytes is not null and v_bytes + p_bytes > p_max_bytes) then
        return jsonb_build_object('outcome', 'quota_exceeded', 'files', v_files, 'bytes', v_bytes,
                                  'max_files', p_max_files, 'max_bytes', p_max_bytes);
      end if;
    end if;

    begin
      insert into provider_file_uploads
        (tenant_id, provider, purpose, sha256, bytes, filename, mime_type, metadata, expires_at, status, claim_token)
      values
        (p_tenant_id, p_provider, p_purpose, p_sha256, p_bytes, p_filename, p_mime_type,
         coalesce(p_metadata, '{}'::jsonb), p_expires_at, 'uploading', v_token)
      returning * into r;
      return jsonb_build_object('outcome', 'claimed', 'claim_token', v_token, 'taken_over', false,
                                'file', filegate_file_json(r));
    exception when unique_violation then
      -- A concurrent claim inserted first: read its row on the next turn.
      null;
    end;
  end loop;
  raise exception 'claim_upload: no stable outcome after 5 attempts' using errcode = '40001';
end
$$;

-- The live completed row for this content among p_providers (in their order), its last_used_at
-- bumped. The bump is skipped when the row was used within the last second: every write of this
-- indexed column rewrites the row in all its indexes, and a hot file hit thousands of times a
-- second needs one write a second, not thousands; retention counts in days. Null row if none.
create or replace function filegate_touch_live_duplicate(
  p_tenant_id text, p_providers text[], p_purpose text, p_sha256 text
) returns provider_file_uploads
language plpgsql as $$
declare r provider_file_uploads;
begin
  select * into r from provider_file_uploads
   where tenant_id = p_tenant_id and provider = any(p_providers) and purpose = p_purpose
     and sha256 = p_sha256 and deleted_at is null and status = 'completed'
   order by array_position(p_providers, provider)
   limit 1;
  if found and r.last_used_at < now() - interval '1 second' then
    update provider_file_uploads set last_used_at = now()
     where id = r.id and deleted_at is null and status = 'completed'
    returning * into r;
  end if;
  return r;
end
$$;

-- Dedup probe (X-Content-SHA256, provider=auto): the live duplicate, or null.
create or replace function find_live_duplicate(
  p_tenant_id text, p_providers text[], p_purpose text, p_sha256 text
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  r := filegate_touch_live_duplicate(p_tenant_id, p_providers, p_purpose, p_sha256);
  if r.id is null then return null; end if;
  return filegate_file_json(r);
end
$$;

-- Completes a claim. If the claim was lost (taken over, or the row deleted meanwhile), the
-- provider copy just made is recorded as an orphan tombstone so it is deleted, never leaked.
create or replace function complete_upload(
  p_id uuid, p_claim_token uuid, p_provider_file_id text, p_bytes bigint default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads;
begin
  update provider_file_uploads
     set status = 'completed', provider_file_id = p_provider_file_id, updated_at = now(),
         last_used_at = now(), error = null, claim_token = null, bytes = coalesce(p_bytes, bytes)
   where id = p_id and claim_token = p_claim_token and status in ('pending', 'uploading') and deleted_at is null
  returning * into r;
  if found then
    return jsonb_build_object('outcome', 'completed', 'file', filegate_file_json(r));
  end if;
  select * into o from provider_file_uploads where id = p_id;
  insert into provider_file_uploads
    (tenant_id, provider, purpose, sha256, bytes, filename, mime_type, provider_file_id, status,
     deleted_at, deletion_reason, error, created_at)
  values
    (o.tenant_id, o.provider, o.purpose, o.sha256, coalesce(p_bytes, o.bytes), o.filename, o.mime_type, p_provider_file_id,
     'deleted', now(), 'orphaned', 'upload claim lost before completion', now())
  returning * into r;
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r),
                            'file', case when o.id is null then null else filegate_file_json(o) end);
end
$$;

-- Fails a claim. With a provider copy (e.g. checksum mismatch after stream-through) the row
-- becomes an orphan tombstone so the copy is deleted; without one it stays `failed`.
create or replace function fail_upload(
  p_id uuid, p_claim_token uuid, p_error text, p_provider_file_id text default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  if p_provider_file_id is null then
    update provider_file_uploads
       set status = 'failed', error = left(p_error, 2000), updated_at = now(), claim_token = null
     where id = p_id and claim_token = p_claim_token and deleted_at is null
    returning * into r;
  else
    update provider_file_uploads
       set status = 'deleted', deleted_at = now(), deletion_reason = 'orphaned', error = left(p_error, 2000),
           provider_file_id = p_provider_file_id, provider_deleted = false, updated_at = now(),
           claim_token = null, next_delete_at = null
     where id = p_id and claim_token = p_claim_token and deleted_at is null
    returning * into r;
  end if;
  if not found then return null; end if;
  return filegate_file_json(r);
end
$$;

-- ----------------------------------------------------------------------------------------
-- Reads

create or replace function get_file(p_tenant_id text, p_id uuid) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select filegate_file_json(u) from provider_file_uploads u where u.id = p_id and u.tenant_id = p_tenant_id
$$;

create or replace function get_file_by_provider_id(p_tenant_id text, p_provider text, p_provider_file_id text)
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select filegate_file_json(u) from provider_file_uploads u
   where u.tenant_id = p_tenant_id and u.provider = p_provider and u.provider_file_id = p_provider_file_id
   order by (u.deleted_at is null) desc, u.created_at desc
   limit 1
$$;

-- Keyset pagination, newest first (or oldest first for the OpenAI facade's order=asc).
-- p_after_* come from the previous page's last row; one row more than asked tells has_more.
-- p_after_created_at is text: drivers that map timestamptz parameters through JS Dates would cut
-- it to milliseconds, and a keyset cursor must keep the row's exact microseconds.
create or replace function list_files(
  p_tenant_id text, p_limit integer default 20, p_provider text default null, p_status text default null,
  p_sha256 text default null, p_purpose text default null, p_include_deleted boolean default false,
  p_after_created_at text default null, p_after_id uuid default null, p_ascending boolean default false
) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select jsonb_build_object(
    'data', coalesce(jsonb_agg(filegate_file_json(x.u) order by x.n) filter (where x.n <= p_limit), '[]'::jsonb),
    'has_more', count(*) > p_limit)
  from (
    select u, row_number() over (order by
             case when p_ascending then u.created_at end asc, case when p_ascending then u.id end asc,
             case when not p_ascending then u.created_at end desc, case when not p_ascending then u.id end desc) as n
      from provider_file_uploads u
     where u.tenant_id = p_tenant_id
       and (p_provider is null or u.provider = p_provider)
       and (p_status is null or u.status = p_status)
       and (p_sha256 is null or u.sha256 = p_sha256)
       and (p_purpose is null or u.purpose = p_purpose)
       and (p_include_deleted or p_status = 'deleted' or u.deleted_at is null)
       and (p_after_created_at is null
            or (not p_ascending and (u.created_at, u.id) < (p_after_created_at::timestamptz, p_after_id))
            or (p_ascending and (u.created_at, u.id) > (p_after_created_at::timestamptz, p_after_id)))
     order by
       case when p_ascending then u.created_at end asc, case when p_ascending then u.id end asc,
       case when not p_ascending then u.created_at end desc, case when not p_ascending then u.id end desc
     limit p_limit + 1
  ) x
$$;

-- ----------------------------------------------------------------------------------------
-- Deletion: tombstone first, then the provider delete, claimed under a short lease so that
-- each provider file is deleted by one worker only, whatever the number of replicas.

create or replace function soft_delete_file(file_id uuid, reason text) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set status = 'deleted', deleted_at = now(), deletion_reason = reason, updated_at = now(),
         provider_deleted = (provider_file_id is null),
         provider_deleted_at = case when provider_file_id is null then now() end,
         claim_token = null, next_delete_at = null
   where id = file_id and deleted_at is null
  returning * into r;
  if not found then
    select * into r from provider_file_uploads where id = file_id;
    if not found then return null; end if;
  end if;
  return filegate_file_json(r);
end
$$;

-- Claims one tombstone's provider delete for p_lease_seconds (null when another worker has it,
-- it is done, or it is backing off).
create or replace function claim_provider_delete(p_id uuid, p_lease_seconds integer default 300)
returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set next_delete_at = now() + make_interval(secs => p_lease_seconds)
   where id = p_id and deleted_at is not null and provider_deleted = false and provider_file_id is not null
     and (next_delete_at is null or next_delete_at <= now())
  returning * into r;
  if not found then return null; end if;
  return filegate_file_json(r);
end
$$;

create or replace function claim_provider_deletes(
  p_limit integer, p_lease_seconds integer default 300, p_provider text default null
) returns jsonb
language sql set timezone to 'UTC' as $$
  with c as (
    select id from provider_file_uploads
     where deleted_at is not null and provider_deleted = false and provider_file_id is not null
       and (next_delete_at is null or next_delete_at <= now())
       and (p_provider is null or provider = p_provider)
     order by next_delete_at nulls first
     limit p_limit
     for update skip locked
  ), u as (
    update provider_file_uploads f set next_delete_at = now() + make_interval(secs => p_lease_seconds)
      from c where f.id = c.id
    returning f.*
  )
  select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) from u
$$;

create or replace function find_pending_provider_deletes(p_limit integer, p_provider text default null)
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(filegate_file_json(f)), '[]'::jsonb) from (
    select * from provider_file_uploads
     where deleted_at is not null and provider_deleted = false and provider_file_id is not null
       and (next_delete_at is null or next_delete_at <= now())
       and (p_provider is null or provider = p_provider)
     order by next_delete_at nulls first
     limit p_limit
  ) f
$$;

create or replace function mark_provider_deleted(p_id uuid) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set provider_deleted = true, provider_deleted_at = now(), next_delete_at = null, last_delete_error = null,
         delete_attempts = delete_attempts + 1
   where id = p_id and provider_deleted = false
  returning * into r;
  if not found then return null; end if;
  return filegate_file_json(r);
end
$$;

-- Bulk form for sweeps: one round trip per batch of successful deletes.
create or replace function mark_provider_deleted_many(p_ids uuid[]) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update provider_file_uploads
       set provider_deleted = true, provider_deleted_at = now(), next_delete_at = null, last_delete_error = null,
           delete_attempts = delete_attempts + 1
     where id = any(p_ids) and provider_deleted = false
    returning provider, coalesce(deletion_reason, 'manual') as reason
  )
  select coalesce(jsonb_agg(jsonb_build_object('provider', provider, 'reason', reason, 'n', n)), '[]'::jsonb)
    from (select provider, reason, count(*) as n from u group by provider, reason) g
$$;

-- Backoff: 30 s doubling per attempt, capped at 1 h, at least what the provider asked for.
create or replace function record_provider_delete_failure(p_id uuid, p_error text, p_min_delay_seconds integer default 0)
returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set delete_attempts = delete_attempts + 1, last_delete_error = left(p_error, 2000),
         next_delete_at = now() + make_interval(secs => greatest(p_min_delay_seconds,
                            least(3600, 30 * power(2, least(delete_attempts, 10)))::integer))
   where id = p_id and provider_deleted = false
  returning * into r;
  if not found then return null; end if;
  return filegate_file_json(r);
end
$$;

-- ----------------------------------------------------------------------------------------
-- Sweeps. find_* only read (dry run); sweep_* tombstone and claim the provider delete in one
-- statement with SKIP LOCKED, so two workers never take the same row.

-- Expired: a per-file expires_at in the past, or no expires_at and unused for retention_days.
-- One ordering (by the moment each became due) serves the dry run and the sweep alike, so a dry
-- run lists exactly what the following real run with the same limit takes.
create or replace function filegate_expired_candidates(retention_days integer, p_limit integer)
returns table (id uuid, due_at timestamptz)
language sql stable as $$
  select c.id, c.due_at from (
    (select u.id, u.expires_at as due_at from provider_file_uploads u
      where u.deleted_at is null and u.status = 'completed' and u.expires_at is not null and u.expires_at <= now()
      order by u.expires_at, u.id limit p_limit)
    union all
    (select u.id, u.last_used_at + make_interval(days => retention_days) from provider_file_uploads u
      where u.deleted_at is null and u.status = 'completed' and u.expires_at is null
        and u.last_used_at < now() - make_interval(days => retention_days)
      order by u.last_used_at, u.id limit p_limit)
  ) c
  order by c.due_at, c.id
  limit p_limit
$$;

create or replace function find_expired_files(retention_days integer, p_limit integer default 100)
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(filegate_file_json(f) order by c.due_at, c.id), '[]'::jsonb)
    from filegate_expired_candidates(retention_days, p_limit) c
    join provider_file_uploads f on f.id = c.id
$$;

create or replace function sweep_expired_files(
  retention_days integer, p_limit integer default 100, p_lease_seconds integer default 300
) returns jsonb
language sql set timezone to 'UTC' as $$
  with c as (
    select f.id from provider_file_uploads f
     where f.id in (select id from filegate_expired_candidates(retention_days, p_limit))
       and f.deleted_at is null and f.status = 'completed'
     for update skip locked
  ), u as (
    update provider_file_uploads f
       set status = 'deleted', deleted_at = now(), deletion_reason = 'expired', updated_at = now(),
           provider_deleted = (f.provider_file_id is null),
           provider_deleted_at = case when f.provider_file_id is null then now() end,
           next_delete_at = now() + make_interval(secs => p_lease_seconds)
      from c where f.id = c.id
    returning f.*
  )
  select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) from u
$$;

-- Orphaned: failed rows older than orphan_age_days. Stuck: in-flight rows untouched for
-- stuck_minutes. As for expired, one candidate function each serves the dry run and the sweep.
create or replace function filegate_orphan_candidates(orphan_age_days integer, p_limit integer)
returns setof uuid
language sql stable as $$
  select id from provider_file_uploads
   where deleted_at is null and status = 'failed'
     and updated_at < now() - make_interval(days => orphan_age_days)
   order by updated_at, id limit p_limit
$$;

create or replace function filegate_stuck_candidates(stuck_minutes integer, p_limit integer)
returns setof uuid
language sql stable as $$
  select id from provider_file_uploads
   where status in ('pending', 'uploading') and updated_at < now() - make_interval(mins => stuck_minutes)
   order by updated_at, id limit p_limit
$$;

create or replace function find_orphaned_files(orphan_age_days integer, p_limit integer default 100)
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(filegate_file_json(f) order by f.updated_at, f.id), '[]'::jsonb)
    from provider_file_uploads f
   where f.id in (select filegate_orphan_candidates(orphan_age_days, p_limit))
$$;

create or replace function sweep_orphaned_files(
  orphan_age_days integer, p_limit integer default 100, p_lease_seconds integer default 300
) returns jsonb
language sql set timezone to 'UTC' as $$
  with c as (
    select f.id from provider_file_uploads f
     where f.id in (select filegate_orphan_candidates(orphan_age_days, p_limit))
       and f.deleted_at is null and f.status = 'failed'
     for update skip locked
  ), u as (
    update provider_file_uploads f
       set status = 'deleted', deleted_at = now(), deletion_reason = 'orphaned', updated_at = now(),
           provider_deleted = (f.provider_file_id is null or f.provider_deleted),
           provider_deleted_at = coalesce(f.provider_deleted_at, case when f.provider_file_id is null then now() end),
           next_delete_at = now() + make_interval(secs => p_lease_seconds)
      from c where f.id = c.id
    returning f.*
  )
  select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) from u
$$;

create or replace function find_stuck_uploads(stuck_minutes integer, p_limit integer default 100)
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(filegate_file_json(f) order by f.updated_at, f.id), '[]'::jsonb)
    from provider_file_uploads f
   where f.id in (select filegate_stuck_candidates(stuck_minutes, p_limit))
$$;

create or replace function fail_stuck_uploads(stuck_minutes integer, p_limit integer default 100)
returns jsonb
language sql set timezone to 'UTC' as $$
  with c as (
    select f.id from provider_file_uploads f
     where f.id in (select filegate_stuck_candidates(stuck_minutes, p_limit))
       and f.status in ('pending', 'uploading')
     for update skip locked
  ), u as (
    update provider_file_uploads f
       set status = 'failed', claim_token = null, updated_at = now(),
           error = format('stuck: no progress for %s minutes', stuck_minutes)
      from c where f.id = c.id
    returning f.*
  )
  select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) from u
$$;

-- Reconcile: of the ids the provider lists, those no row knows (any status, tombstones too).
create or replace function find_unknown_provider_files(p_provider text, p_provider_file_ids text[])
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(i), '[]'::jsonb) from unnest(p_provider_file_ids) as i
   where not exists (select 1 from provider_file_uploads u where u.provider = p_provider and u.provider_file_id = i)
$$;

-- Reconcile: live completed rows created before p_listed_before whose provider file is not
-- in the listing. With p_apply they are tombstoned `reconciled` (nothing left to delete).
create or replace function reconcile_gone_files(
  p_provider text, p_provider_file_ids text[], p_listed_before timestamptz, p_apply boolean default false,
  p_limit integer default 1000
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare v jsonb;
begin
  if not p_apply then
    select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) into v from (
      select * from provider_file_uploads u
       where u.provider = p_provider and u.deleted_at is null and u.status = 'completed'
         and u.created_at < p_listed_before and not (u.provider_file_id = any(p_provider_file_ids))
       limit p_limit) u;
    return v;
  end if;
  with c as (
    select id from provider_file_uploads u
     where u.provider = p_provider and u.deleted_at is null and u.status = 'completed'
       and u.created_at < p_listed_before and not (u.provider_file_id = any(p_provider_file_ids))
     limit p_limit
     for update skip locked
  ), t as (
    update provider_file_uploads f
       set status = 'deleted', deleted_at = now(), deletion_reason = 'reconciled', updated_at = now(),
           provider_deleted = true, provider_deleted_at = now(), next_delete_at = null
      from c where f.id = c.id
    returning f.*
  )
  select coalesce(jsonb_agg(filegate_file_json(t)), '[]'::jsonb) into v from t;
  return v;
end
$$;

-- ----------------------------------------------------------------------------------------
-- Leases for scheduled jobs: one holder at a time; a dead holder's lease simply expires.

create or replace function acquire_job_lease(p_job text, p_holder text, p_ttl_seconds integer) returns jsonb
language plpgsql as $$
declare v_holder text;
begin
  insert into filegate_job_leases as l (job, holder, acquired_at, expires_at)
  values (p_job, p_holder, now(), now() + make_interval(secs => p_ttl_seconds))
  on conflict (job) do update
     set holder = excluded.holder, acquired_at = now(), expires_at = excluded.expires_at
   where l.expires_at <= now() or l.holder = excluded.holder
  returning holder into v_holder;
  return to_jsonb(v_holder is not null and v_holder = p_holder);
end
$$;

create or replace function release_job_lease(p_job text, p_holder text) returns jsonb
language sql as $$
  with d as (delete from filegate_job_leases where job = p_job and holder = p_holder returning 1)
  select to_jsonb(exists (select 1 from d))
$$;

-- The latest migration redefines this; readiness compares it with the code's expectation.
create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(1) $$;

-- On Supabase, PostgREST would let anon/authenticated call these: only the service role may.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in (
         'filegate_file_json', 'filegate_occupies_provider', 'provider_usage', 'claim_upload', 'find_live_duplicate',
         'complete_upload', 'fail_upload', 'get_file', 'get_file_by_provider_id', 'list_files', 'soft_delete_file',
         'claim_provider_delete', 'claim_provider_deletes', 'find_pending_provider_deletes', 'mark_provider_deleted',
         'record_provider_delete_failure', 'mark_provider_deleted_many', 'filegate_touch_live_duplicate', 'find_expired_files', 'sweep_expired_files', 'find_orphaned_files',
         'sweep_orphaned_files', 'find_stuck_uploads', 'filegate_expired_candidates', 'filegate_orphan_candidates',
         'filegate_stuck_candidates', 'fail_stuck_uploads', 'find_unknown_provider_files',
         'reconcile_gone_files', 'acquire_job_lease', 'release_job_lease')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
