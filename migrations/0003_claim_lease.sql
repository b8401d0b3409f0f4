-- filegate schema 3: an upload claim knows whether its owner is alive.
--
-- A claim now records its owner (host, pid and a random id of the uploading process) and a lease,
-- `claimed_until`, that the owner renews every few seconds while it uploads (renew_upload_claim).
-- An `uploading` row whose lease has run out belongs to a process that crashed or lost the
-- database: claim_upload takes it over at once, instead of answering `in_progress` until the
-- stuck threshold (minutes) has passed. The stuck threshold stays: a row older than it is taken
-- over whatever its lease says, and the stuck sweep still fails rows nobody retries.
--
-- The takeover runs on the row lock claim_upload already takes (`for update`): of two callers
-- racing for one dead claim, the second waits for the first's transaction, then reads a fresh
-- lease and answers `in_progress`. No session-level lock is involved, so this holds on every
-- transport (PGlite, Postgres, PostgREST .rpc()).

alter table provider_file_uploads add column if not exists claim_owner text;
alter table provider_file_uploads add column if not exists claimed_until timestamptz;

-- The owner and lease are bookkeeping, like the claim token: kept out of the rows handed out.
create or replace function filegate_file_json(r provider_file_uploads) returns jsonb
language sql immutable set timezone to 'UTC' as $$
  select to_jsonb(r) - 'claim_token' - 'next_delete_at' - 'claim_owner'
$$;

-- 0001's claim_upload had no owner nor lease; with new arguments it is another function, and
-- keeping both would make calls by name ambiguous.
drop function if exists claim_upload(text, text, text, text, bigint, text, text, jsonb, timestamptz, integer, integer, bigint);

-- Claims the right to upload (tenant, provider, purpose, sha256). Outcomes:
--   duplicate       a live completed row exists: last_used_at bumped, nothing to upload
--   claimed         this caller uploads; claim_token must be shown to renew/complete/fail
--   in_progress     a live owner is uploading it now: wait and claim again
--   quota_exceeded  the provider account cap would be broken (counted across tenants)
-- A failed row never blocks: it is tombstoned (orphaned) and a fresh row claimed.
-- An in-flight row whose lease ran out (its owner is gone), or untouched for p_stuck_minutes, is
-- taken over with a new token, owner and lease (`taken_over: true`).
create or replace function claim_upload(
  p_tenant_id text, p_provider text, p_purpose text, p_sha256 text, p_bytes bigint,
  p_filename text, p_mime_type text, p_metadata jsonb default '{}'::jsonb,
  p_expires_at timestamptz default null, p_stuck_minutes integer default 30,
  p_max_files integer default null, p_max_bytes bigint default null,
  p_owner text default null, p_lease_seconds integer default 10
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  r provider_file_uploads;
  v_token uuid := gen_random_uuid();
  v_files bigint;
  v_bytes bigint;
  v_until timestamptz := now() + make_interval(secs => p_lease_seconds);
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
      elsif r.claimed_until < now() or r.updated_at < now() - make_interval(mins => p_stuck_minutes) then
        update provider_file_uploads
           set claim_token = v_token, claim_owner = p_owner, claimed_until = v_until,
               status = 'uploading', updated_at = now(), error = null,
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
        (tenant_id, provider, purpose, sha256, bytes, filename, mime_type, metadata, expires_at, status,
         claim_token, claim_owner, claimed_until)
      values
        (p_tenant_id, p_provider, p_purpose, p_sha256, p_bytes, p_filename, p_mime_type,
         coalesce(p_metadata, '{}'::jsonb), p_expires_at, 'uploading', v_token, p_owner, v_until)
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

-- The owner's heartbeat: extends its lease while the claim is still its own. Returns whether it
-- is (false: taken over, deleted or settled; the owner's completion will then find it lost).
-- updated_at is left alone, so the stuck threshold still counts from the claim.
create or replace function renew_upload_claim(p_id uuid, p_claim_token uuid, p_lease_seconds integer default 10)
returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update provider_file_uploads set claimed_until = now() + make_interval(secs => p_lease_seconds)
     where id = p_id and claim_token = p_claim_token and status in ('pending', 'uploading') and deleted_at is null
    returning 1
  )
  select to_jsonb(exists (select 1 from u))
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(3) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function claim_upload(text, text, text, text, bigint, text, text, jsonb, timestamptz, integer,
                                            integer, bigint, text, integer) from public, anon, authenticated;
    revoke execute on function renew_upload_claim(uuid, uuid, integer) from public, anon, authenticated;
  end if;
end
$$;
