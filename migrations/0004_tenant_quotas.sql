-- filegate schema 4: per-tenant quotas on each provider account, and each tenant's own usage.
--
-- The provider accounts are shared by every tenant; one tenant's uploads must not be able to fill
-- one. claim_upload now also takes the tenant's caps at this provider (TENANT_MAX_FILES,
-- TENANT_MAX_BYTES, or the tenant's entry in TENANT_QUOTAS) and refuses a claim that would break
-- them with `tenant_quota_exceeded`. Usage is counted as for the account caps: every row of the
-- tenant that occupies the account (in flight, live, or tombstoned but not yet deleted there).
-- Claims of one tenant at one provider are serialised by an advisory transaction lock, taken
-- after the provider's own (always in that order, so two claims never wait on each other).
-- Forward-only and idempotent like the others.

-- Counting one tenant's rows at one provider reads only those.
create index if not exists provider_file_uploads_tenant_occupying
  on provider_file_uploads (tenant_id, provider) where provider_deleted = false;

-- 0003's claim_upload had no tenant caps; with new arguments it is another function, and keeping
-- both would make calls by name ambiguous.
drop function if exists claim_upload(text, text, text, text, bigint, text, text, jsonb, timestamptz, integer, integer,
                                     bigint, text, integer);

-- Claims the right to upload (tenant, provider, purpose, sha256). Outcomes:
--   duplicate              a live completed row exists: last_used_at bumped, nothing to upload
--   claimed                this caller uploads; claim_token must be shown to renew/complete/fail
--   in_progress            a live owner is uploading it now: wait and claim again
--   quota_exceeded         the provider account cap would be broken (counted across tenants)
--   tenant_quota_exceeded  the tenant's own cap at this provider would be broken
-- A failed row never blocks: it is tombstoned (orphaned) and a fresh row claimed.
-- An in-flight row whose lease ran out (its owner is gone), or untouched for p_stuck_minutes, is
-- taken over with a new token, owner and lease (`taken_over: true`).
-- p_bytes is what the upload will really occupy: the spooled size, or the declared length of a
-- body streamed through (at most the provider's per-file limit); completion records the real one.
create or replace function claim_upload(
  p_tenant_id text, p_provider text, p_purpose text, p_sha256 text, p_bytes bigint,
  p_filename text, p_mime_type text, p_metadata jsonb default '{}'::jsonb,
  p_expires_at timestamptz default null, p_stuck_minutes integer default 30,
  p_max_files integer default null, p_max_bytes bigint default null,
  p_owner text default null, p_lease_seconds integer default 10,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null
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

    if p_tenant_max_files is not null or p_tenant_max_bytes is not null then
      perform pg_advisory_xact_lock(hashtext('filegate:tenant-quota:' || p_provider || ':' || p_tenant_id));
      select count(*), coalesce(sum(u.bytes), 0) into v_files, v_bytes
        from provider_file_uploads u
       where u.tenant_id = p_tenant_id and u.provider = p_provider and u.provider_deleted = false
         and filegate_occupies_provider(u);
      if (p_tenant_max_files is not null and v_files + 1 > p_tenant_max_files)
         or (p_tenant_max_bytes is not null and v_bytes + p_bytes > p_tenant_max_bytes) then
        return jsonb_build_object('outcome', 'tenant_quota_exceeded', 'files', v_files, 'bytes', v_bytes,
                                  'max_files', p_tenant_max_files, 'max_bytes', p_tenant_max_bytes);
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

-- What one tenant occupies on each provider account (what GET /v1/limits shows a tenant key).
create or replace function tenant_usage(p_tenant_id text) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(jsonb_build_object('provider', provider, 'files', files, 'bytes', bytes)), '[]'::jsonb)
  from (
    select u.provider, count(*) as files, coalesce(sum(u.bytes), 0) as bytes
    from provider_file_uploads u
    where u.tenant_id = p_tenant_id and u.provider_deleted = false and filegate_occupies_provider(u)
    group by u.provider
  ) s
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(4) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function claim_upload(text, text, text, text, bigint, text, text, jsonb, timestamptz, integer,
                                            integer, bigint, text, integer, integer, bigint)
      from public, anon, authenticated;
    revoke execute on function tenant_usage(text) from public, anon, authenticated;
  end if;
end
$$;
