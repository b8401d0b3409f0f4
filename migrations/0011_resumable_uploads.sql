-- filegate schema 11: resumable uploads (tus 1.0 at /v1/uploads, OpenAI Uploads on the facade).
--
-- A resumable upload's bytes arrive in pieces (a tus PATCH, an OpenAI part), each kept as one
-- segment in the staging area (the originals store when ORIGINALS_URL is set, else UPLOAD_TMP_DIR).
-- The database knows the upload (one row: what was declared, how far it got, its status and expiry)
-- and each segment it recorded. A segment is recorded only once its bytes are stored; a write that
-- a crash cut short leaves bytes no row names, removed with the upload's whole staging prefix.
--
-- One lease per upload (lock_token, locked_until) serialises what may not run twice: a tus PATCH
-- (two PATCHes at one offset never both append) and the completion (N concurrent completes make one
-- provider upload). A holder renews it while it works; a dead holder's lease runs out and the next
-- caller takes over. Statuses:
--   receiving   bytes may arrive (OpenAI: `pending`)
--   processing  the completion holds the lease: the staged bytes are read and uploaded
--   completed   file_id names the File (a live duplicate's, when one answered)
--   failed      the completion failed for good (error says why)
--   cancelled   cancelled by the client (OpenAI cancel, tus termination)
--   expired     expires_at passed while receiving
-- The `resumable` cleanup job removes a settled upload's staged bytes (staged_removed_at), expires
-- uploads past expires_at, and drops rows whose staged bytes are gone once expires_at has passed.

create table if not exists resumable_uploads (
  id                uuid primary key default gen_random_uuid(),
  tenant_id         text not null check (length(tenant_id) between 1 and 128),
  protocol          text not null check (protocol in ('tus', 'openai')),
  provider          text not null check (length(provider) between 1 and 32),
  purpose           text check (length(purpose) between 1 and 64),
  filename          text not null check (length(filename) between 1 and 255),
  mime_type         text not null default 'application/octet-stream',
  bytes             bigint not null check (bytes > 0),
  received          bigint not null default 0 check (received >= 0),
  metadata          jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
  file_expires_in   integer check (file_expires_in > 0),
  sha256            text check (sha256 ~ '^[0-9a-f]{64}$'),
  status            text not null default 'receiving'
                      constraint resumable_status check (status in
                        ('receiving', 'processing', 'completed', 'failed', 'cancelled', 'expired')),
  part_order        jsonb,
  file_id           uuid,
  error             text,
  error_code        text,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  expires_at        timestamptz not null,
  lock_token        uuid,
  locked_until      timestamptz,
  staged_removed_at timestamptz,
  constraint completed_has_file check (status <> 'completed' or file_id is not null)
);

create table if not exists resumable_segments (
  id         uuid primary key,
  upload_id  uuid not null references resumable_uploads (id) on delete cascade,
  -- tus: the byte offset the segment starts at; OpenAI parts are ordered by the complete call.
  position   bigint,
  bytes      bigint not null check (bytes >= 0),
  created_at timestamptz not null default now()
);

create index if not exists resumable_segments_upload on resumable_segments (upload_id, position);
-- The tenant's staged bytes at a provider (quota), and the sweep's two questions.
create index if not exists resumable_uploads_tenant_open
  on resumable_uploads (tenant_id, provider) where status in ('receiving', 'processing');
create index if not exists resumable_uploads_expiring
  on resumable_uploads (expires_at) where status = 'receiving';
create index if not exists resumable_uploads_staged
  on resumable_uploads (updated_at) where staged_removed_at is null and status not in ('receiving', 'processing');

alter table resumable_uploads enable row level security;
alter table resumable_segments enable row level security;

-- The upload as the service reads it: no lease token; the segments in their order when asked.
create or replace function filegate_resumable_json(u resumable_uploads, p_with_segments boolean default false)
returns jsonb
language sql stable set timezone to 'UTC' as $$
  select (to_jsonb(u) - 'lock_token')
    || jsonb_build_object('locked', u.locked_until is not null and u.locked_until > now())
    || case when p_with_segments then jsonb_build_object('segments', (
         select coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'bytes', s.bytes, 'position', s.position,
                                                      'created_at', s.created_at)
                                   order by s.position nulls last, s.created_at, s.id), '[]'::jsonb)
           from resumable_segments s where s.upload_id = u.id))
       else '{}'::jsonb end
$$;

-- A receiving upload past its expiry reads as expired (only the sweep writes the status, and
-- counts it); the caller's view and the sweep's agree.
create or replace function filegate_resumable_seen(u resumable_uploads) returns resumable_uploads
language plpgsql stable set timezone to 'UTC' as $$
begin
  if u.status = 'receiving' and u.expires_at <= now() then
    u.status := 'expired';
  end if;
  return u;
end
$$;

-- ----------------------------------------------------------------------------------------
-- Creation

-- Creates an upload. With tenant caps at a named provider, what the tenant occupies there (as
-- claim_upload counts it) plus the declared bytes of its uploads still receiving or processing
-- there, plus this one, must fit: else `tenant_quota_exceeded` (same advisory lock as claim_upload).
create or replace function create_resumable_upload(
  p_tenant_id text, p_protocol text, p_provider text, p_filename text, p_mime_type text, p_bytes bigint,
  p_ttl_seconds integer, p_purpose text default null, p_metadata jsonb default '{}'::jsonb,
  p_file_expires_in integer default null, p_sha256 text default null,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  u resumable_uploads;
  v_files bigint;
  v_bytes bigint;
begin
  if p_tenant_max_files is not null or p_tenant_max_bytes is not null then
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
    if (p_tenant_max_files is not null and v_files + 1 > p_tenant_max_files)
       or (p_tenant_max_bytes is not null and v_bytes + p_bytes > p_tenant_max_bytes) then
      return jsonb_build_object('outcome', 'tenant_quota_exceeded', 'files', v_files, 'bytes', v_bytes,
                                'max_files', p_tenant_max_files, 'max_bytes', p_tenant_max_bytes);
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

-- The tenant's upload with its segments (null when there is none: another tenant's is none too).
create or replace function get_resumable_upload(p_tenant_id text, p_id uuid) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare u resumable_uploads;
begin
  select * into u from resumable_uploads where id = p_id and tenant_id = p_tenant_id;
  if not found then return null; end if;
  u := filegate_resumable_seen(u);
  return filegate_resumable_json(u, true);
end
$$;

-- ----------------------------------------------------------------------------------------
-- The lease (a tus PATCH, a completion)

-- Takes the upload's lease. Outcomes:
--   locked           the caller holds it (`token`); a processing upload whose holder died is taken over
--   busy             another holder's lease is live
--   offset_mismatch  p_offset is not where the upload is (tus: 409)
--   settled          completed, failed, cancelled or expired: nothing more may happen
-- Null when the tenant has no such upload.
create or replace function lock_resumable_upload(
  p_tenant_id text, p_id uuid, p_lease_seconds integer, p_offset bigint default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  u resumable_uploads;
  v_token uuid := gen_random_uuid();
begin
  select * into u from resumable_uploads where id = p_id and tenant_id = p_tenant_id for update;
  if not found then return null; end if;
  u := filegate_resumable_seen(u);
  if u.status not in ('receiving', 'processing') then
    return jsonb_build_object('outcome', 'settled', 'upload', filegate_resumable_json(u));
  end if;
  if u.locked_until is not null and u.locked_until > now() then
    return jsonb_build_object('outcome', 'busy', 'upload', filegate_resumable_json(u));
  end if;
  if p_offset is not null and p_offset <> u.received then
    return jsonb_build_object('outcome', 'offset_mismatch', 'upload', filegate_resumable_json(u));
  end if;
  update resumable_uploads
     set lock_token = v_token, locked_until = now() + make_interval(secs => p_lease_seconds), updated_at = now()
   where id = p_id
  returning * into u;
  return jsonb_build_object('outcome', 'locked', 'token', v_token, 'upload', filegate_resumable_json(u, true));
end
$$;

create or replace function renew_resumable_lock(p_id uuid, p_token uuid, p_lease_seconds integer) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads set locked_until = now() + make_interval(secs => p_lease_seconds)
     where id = p_id and lock_token = p_token
    returning 1
  )
  select to_jsonb(exists (select 1 from u))
$$;

-- Lets go of the lease; a completion that failed in a way the client may retry goes back to
-- receiving with its error noted (OpenAI: the SDK retries a complete).
create or replace function release_resumable_lock(
  p_id uuid, p_token uuid, p_error text default null, p_error_code text default null
) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads
       set lock_token = null, locked_until = null, updated_at = now(),
           status = case when status = 'processing' then 'receiving' else status end,
           part_order = case when status = 'processing' then null else part_order end,
           error = coalesce(p_error, error), error_code = coalesce(p_error_code, error_code)
     where id = p_id and lock_token = p_token
    returning *
  )
  select filegate_resumable_json(u) from u
$$;

-- ----------------------------------------------------------------------------------------
-- Bytes arriving

-- Records a tus segment written under the lease at the upload's current offset. Null when the
-- lease was lost meanwhile (the segment is then not the upload's: the caller removes it).
create or replace function append_resumable_segment(
  p_id uuid, p_token uuid, p_segment_id uuid, p_bytes bigint, p_keep_lock boolean default false
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare u resumable_uploads;
begin
  select * into u from resumable_uploads
   where id = p_id and lock_token = p_token and status = 'receiving' for update;
  if not found then return null; end if;
  if u.received + p_bytes > u.bytes then
    raise exception 'append_resumable_segment: % bytes past the declared length', u.received + p_bytes - u.bytes
      using errcode = '22003';
  end if;
  if p_bytes > 0 then
    insert into resumable_segments (id, upload_id, position, bytes) values (p_segment_id, p_id, u.received, p_bytes);
  end if;
  update resumable_uploads
     set received = received + p_bytes, updated_at = now(),
         lock_token = case when p_keep_lock then lock_token end,
         locked_until = case when p_keep_lock then locked_until end
   where id = p_id
  returning * into u;
  return filegate_resumable_json(u);
end
$$;

-- Records an OpenAI part (any order, concurrently, no lease). Outcomes: added; too_large (the parts
-- would pass the declared bytes); settled or processing (no part may be added).
create or replace function add_resumable_part(p_tenant_id text, p_id uuid, p_segment_id uuid, p_bytes bigint)
returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  u resumable_uploads;
  v_part jsonb;
begin
  select * into u from resumable_uploads where id = p_id and tenant_id = p_tenant_id for update;
  if not found then return null; end if;
  u := filegate_resumable_seen(u);
  if u.status <> 'receiving' then
    return jsonb_build_object('outcome', case when u.status = 'processing' then 'processing' else 'settled' end,
                              'upload', filegate_resumable_json(u));
  end if;
  if u.received + p_bytes > u.bytes then
    return jsonb_build_object('outcome', 'too_large', 'upload', filegate_resumable_json(u));
  end if;
  insert into resumable_segments (id, upload_id, bytes) values (p_segment_id, p_id, p_bytes)
  returning jsonb_build_object('id', id, 'bytes', bytes, 'created_at', created_at) into v_part;
  update resumable_uploads set received = received + p_bytes, updated_at = now() where id = p_id;
  return jsonb_build_object('outcome', 'added', 'part', v_part);
end
$$;

-- ----------------------------------------------------------------------------------------
-- Completion

-- Under the lease: the segments to read, in order, and the upload marked processing. tus: every
-- segment by offset, and all bytes received. OpenAI: the parts named by p_part_ids in that order
-- (a completion taken over keeps the order it was begun with), each of this upload, none twice,
-- adding up to the declared bytes (p_part_ids: {"ids": [...]}). Outcomes: processing (with
-- `segments`), invalid (`reason`), or lost (the lease is gone).
create or replace function begin_resumable_completion(p_id uuid, p_token uuid, p_part_ids jsonb default null)
returns jsonb
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
  update resumable_uploads set status = 'processing', part_order = v_order, updated_at = now(), error = null,
                               error_code = null
   where id = p_id
  returning * into u;
  return jsonb_build_object('outcome', 'processing', 'segments', v_segments, 'upload', filegate_resumable_json(u));
end
$$;

-- The file is recorded: the upload is completed (its staged bytes are removed next).
create or replace function finish_resumable_upload(p_id uuid, p_token uuid, p_file_id uuid) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads
       set status = 'completed', file_id = p_file_id, lock_token = null, locked_until = null,
           updated_at = now(), error = null, error_code = null
     where id = p_id and lock_token = p_token
    returning *
  )
  select filegate_resumable_json(u) from u
$$;

-- The completion failed for good: the upload is failed (its staged bytes are removed next).
create or replace function fail_resumable_upload(p_id uuid, p_token uuid, p_error text, p_error_code text)
returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update resumable_uploads
       set status = 'failed', error = p_error, error_code = p_error_code, lock_token = null,
           locked_until = null, updated_at = now()
     where id = p_id and lock_token = p_token
    returning *
  )
  select filegate_resumable_json(u) from u
$$;

-- Cancels a receiving upload (a lease a PATCH holds is broken: its append then finds no lease).
-- Outcomes: cancelled; processing (a completion holds it); settled (nothing to cancel).
create or replace function cancel_resumable_upload(p_tenant_id text, p_id uuid) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare u resumable_uploads;
begin
  select * into u from resumable_uploads where id = p_id and tenant_id = p_tenant_id for update;
  if not found then return null; end if;
  u := filegate_resumable_seen(u);
  if u.status = 'processing' then
    return jsonb_build_object('outcome', 'processing', 'upload', filegate_resumable_json(u));
  end if;
  if u.status <> 'receiving' then
    return jsonb_build_object('outcome', 'settled', 'upload', filegate_resumable_json(u));
  end if;
  update resumable_uploads set status = 'cancelled', lock_token = null, locked_until = null, updated_at = now()
   where id = p_id
  returning * into u;
  return jsonb_build_object('outcome', 'cancelled', 'upload', filegate_resumable_json(u));
end
$$;

-- ----------------------------------------------------------------------------------------
-- Removing staged bytes and rows

-- Claims up to p_limit settled uploads whose staged bytes are still there, each held for
-- p_lease_seconds (SKIP LOCKED: a replica never takes another's). Receiving uploads past their
-- expiry are expired first, and processing ones whose holder died long ago (their lease and
-- their expiry both passed) fail.
create or replace function claim_resumable_removals(p_limit integer, p_lease_seconds integer) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  v jsonb;
  v_expired jsonb;
begin
  with e as (
    update resumable_uploads set status = 'expired', updated_at = now(), lock_token = null, locked_until = null
     where status = 'receiving' and expires_at <= now()
    returning protocol
  )
  select coalesce(jsonb_agg(protocol), '[]'::jsonb) into v_expired from e;
  update resumable_uploads
     set status = 'failed', error = 'the replica completing it stopped', error_code = 'INTERNAL', updated_at = now()
   where status = 'processing' and expires_at <= now() and (locked_until is null or locked_until <= now());
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
  return jsonb_build_object('expired', v_expired, 'claimed', v);
end
$$;

-- The staged bytes of a settled upload are gone: its segments are forgotten and the lease let go.
create or replace function forget_resumable_segments(p_id uuid, p_token uuid default null) returns jsonb
language plpgsql set timezone to 'UTC' as $$
begin
  update resumable_uploads set staged_removed_at = now(), lock_token = null, locked_until = null
   where id = p_id and status not in ('receiving', 'processing')
     and (p_token is null or lock_token = p_token or locked_until is null or locked_until <= now());
  if not found then return to_jsonb(false); end if;
  delete from resumable_segments where upload_id = p_id;
  return to_jsonb(true);
end
$$;

-- Drops the rows nothing needs any more: settled, staged bytes removed, expiry passed (a completed
-- upload answers retried completes and status reads until then). `p_id`: that one now (tus termination).
create or replace function delete_settled_resumable_uploads(p_limit integer, p_id uuid default null) returns jsonb
language sql set timezone to 'UTC' as $$
  with d as (
    delete from resumable_uploads
     where id in (
       select id from resumable_uploads
        where staged_removed_at is not null and status not in ('receiving', 'processing')
          and (p_id is null and expires_at <= now() or id = p_id)
        limit p_limit
     )
    returning 1
  )
  select to_jsonb(count(*)) from d
$$;

-- The dry run's view: what the job would do now.
create or replace function find_resumable_removals(p_limit integer) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'protocol', protocol, 'status', status)), '[]'::jsonb)
    from (select id, protocol, status from resumable_uploads
           where (staged_removed_at is null and status not in ('receiving', 'processing'))
              or (status = 'receiving' and expires_at <= now())
           order by updated_at limit p_limit) c
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(11) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in (
         'filegate_resumable_json', 'filegate_resumable_seen', 'create_resumable_upload', 'get_resumable_upload',
         'lock_resumable_upload', 'renew_resumable_lock', 'release_resumable_lock', 'append_resumable_segment',
         'add_resumable_part', 'begin_resumable_completion', 'finish_resumable_upload', 'fail_resumable_upload',
         'cancel_resumable_upload', 'claim_resumable_removals', 'forget_resumable_segments',
         'delete_settled_resumable_uploads', 'find_resumable_removals')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
