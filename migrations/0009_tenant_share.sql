-- filegate schema 9: a tenant's share of a shared provider account.
--
-- With no cap of its own (TENANT_MAX_FILES / TENANT_MAX_BYTES = 0, no TENANT_QUOTAS entry), a tenant
-- may hold at most its share (TENANT_MAX_SHARE) of each account cap, files, bytes and a purpose's
-- documented file count, while the account is shared: the configuration lets more than one tenant
-- in (p_shared), or another tenant has ever had a row. Tenants also come from keys in the database
-- and from JWTs at run time, so the rule cannot count them at start; it asks at each claim, under
-- the same locks as the caps. The service computes the share caps (the share of each cap) and passes
-- them; a cap of the tenant's own always applies and replaces its share.
--
-- A tenant's own cap (or share) is checked before the account's: a tenant at its share is told its
-- own figures, and learns nothing of how full the account is with other tenants' files.
-- Locks are taken in the same order as before (provider, then tenant), so two claims never wait on
-- each other. Forward-only and idempotent like the others.

-- Whether any tenant other than p_tenant_id has a row (live or not, at any provider): two index
-- range probes on (tenant_id, created_at), each stopping at its first row.
create or replace function filegate_other_tenant_exists(p_tenant_id text) returns boolean
language sql stable as $$
  select exists (select 1 from provider_file_uploads where tenant_id < p_tenant_id)
      or exists (select 1 from provider_file_uploads where tenant_id > p_tenant_id)
$$;

-- Whether p_tenant_id's share caps apply now (GET /v1/limits shows them to the tenant).
create or replace function tenant_account_shared(p_tenant_id text, p_shared boolean default false) returns boolean
language sql stable as $$
  select p_shared or filegate_other_tenant_exists(p_tenant_id)
$$;

-- 0004's claim_upload and 0005's claim_upload_within_purpose_cap had no share caps; with new
-- arguments they are other functions, and keeping both would make calls by name ambiguous.
drop function if exists claim_upload(text, text, text, text, bigint, text, text, jsonb, timestamptz, integer, integer,
                                     bigint, text, integer, integer, bigint);
drop function if exists claim_upload_within_purpose_cap(text, text, text, text, bigint, text, text, integer, jsonb,
                                                        timestamptz, integer, integer, bigint, text, integer, integer,
                                                        bigint);

-- Claims the right to upload (tenant, provider, purpose, sha256). Outcomes as in 0004:
--   duplicate, claimed, in_progress, quota_exceeded (the account's caps, counted across tenants),
--   tenant_quota_exceeded (the tenant's own cap or share; `files`/`bytes` its own usage, `max_*`
--   the caps that applied to it).
-- p_tenant_max_files / p_tenant_max_bytes: the tenant's own caps (always).
-- p_share_max_files / p_share_max_bytes: its share of the account's caps, for a cap it has no own
-- cap for; they apply while the account is shared (p_shared, or another tenant has a row).
create or replace function claim_upload(
  p_tenant_id text, p_provider text, p_purpose text, p_sha256 text, p_bytes bigint,
  p_filename text, p_mime_type text, p_metadata jsonb default '{}'::jsonb,
  p_expires_at timestamptz default null, p_stuck_minutes integer default 30,
  p_max_files integer default null, p_max_bytes bigint default null,
  p_owner text default null, p_lease_seconds integer default 10,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null,
  p_share_max_files integer default null, p_share_max_bytes bigint default null,
  p_shared boolean default false
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  r provider_file_uploads;
  v_token uuid := gen_random_uuid();
  v_files bigint;
  v_bytes bigint;
  v_until timestamptz := now() + make_interval(secs => p_lease_seconds);
  v_tenant_max_files bigint := p_tenant_max_files;
  v_tenant_max_bytes bigint := p_tenant_max_bytes;
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

    -- Serialise claims per provider (so two replicas cannot both take the last slot), then per
    -- tenant and provider; always in that order.
    if p_max_files is not null or p_max_bytes is not null then
      perform pg_advisory_xact_lock(hashtext('filegate:quota:' || p_provider));
    end if;
    if (p_share_max_files is not null or p_share_max_bytes is not null)
       and (v_tenant_max_files is null or v_tenant_max_bytes is null)
       and tenant_account_shared(p_tenant_id, p_shared) then
      v_tenant_max_files := coalesce(v_tenant_max_files, p_share_max_files);
      v_tenant_max_bytes := coalesce(v_tenant_max_bytes, p_share_max_bytes);
    end if;

    if v_tenant_max_files is not null or v_tenant_max_bytes is not null then
      perform pg_advisory_xact_lock(hashtext('filegate:tenant-quota:' || p_provider || ':' || p_tenant_id));
      select count(*), coalesce(sum(u.bytes), 0) into v_files, v_bytes
        from provider_file_uploads u
       where u.tenant_id = p_tenant_id and u.provider = p_provider and u.provider_deleted = false
         and filegate_occupies_provider(u);
      if (v_tenant_max_files is not null and v_files + 1 > v_tenant_max_files)
         or (v_tenant_max_bytes is not null and v_bytes + p_bytes > v_tenant_max_bytes) then
        return jsonb_build_object('outcome', 'tenant_quota_exceeded', 'files', v_files, 'bytes', v_bytes,
                                  'max_files', v_tenant_max_files, 'max_bytes', v_tenant_max_bytes);
      end if;
    end if;

    if p_max_files is not null or p_max_bytes is not null then
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

-- 0005's purpose cap, with the tenant's share of it checked first (p_share_max_purpose_files, while
-- the account is shared): a tenant at its share of a purpose is refused with its own figures.
-- Content already claimed (a live copy, one in flight, a failed row to retry) adds no file and goes
-- on to claim_upload unchanged.
create or replace function claim_upload_within_purpose_cap(
  p_tenant_id text, p_provider text, p_purpose text, p_sha256 text, p_bytes bigint,
  p_filename text, p_mime_type text, p_max_purpose_files integer,
  p_metadata jsonb default '{}'::jsonb, p_expires_at timestamptz default null,
  p_stuck_minutes integer default 30, p_max_files integer default null, p_max_bytes bigint default null,
  p_owner text default null, p_lease_seconds integer default 10,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null,
  p_share_max_files integer default null, p_share_max_bytes bigint default null,
  p_share_max_purpose_files integer default null, p_shared boolean default false
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  v_files bigint;
  v_known boolean;
begin
  -- The lock claim_upload takes for the account caps (re-entrant in this transaction), so two
  -- replicas cannot both take the last slot of a purpose; then the tenant's, in claim_upload's order.
  perform pg_advisory_xact_lock(hashtext('filegate:quota:' || p_provider));
  select exists (
    select 1 from provider_file_uploads k
     where k.tenant_id = p_tenant_id and k.provider = p_provider and k.purpose = p_purpose
       and k.sha256 = p_sha256 and k.deleted_at is null
  ) into v_known;
  if not v_known and p_share_max_purpose_files is not null and tenant_account_shared(p_tenant_id, p_shared) then
    perform pg_advisory_xact_lock(hashtext('filegate:tenant-quota:' || p_provider || ':' || p_tenant_id));
    select count(*) into v_files
      from provider_file_uploads u
     where u.tenant_id = p_tenant_id and u.provider = p_provider and u.purpose = p_purpose
       and u.provider_deleted = false and filegate_occupies_provider(u);
    if v_files + 1 > p_share_max_purpose_files then
      return jsonb_build_object('outcome', 'tenant_quota_exceeded', 'scope', 'purpose', 'purpose', p_purpose,
                                'files', v_files, 'bytes', null, 'max_files', p_share_max_purpose_files,
                                'max_bytes', null);
    end if;
  end if;
  select count(*) into v_files
    from provider_file_uploads u
   where u.provider = p_provider and u.purpose = p_purpose
     and u.provider_deleted = false and filegate_occupies_provider(u);
  if v_files + 1 > p_max_purpose_files and not v_known then
    return jsonb_build_object('outcome', 'quota_exceeded', 'scope', 'purpose', 'purpose', p_purpose,
                              'files', v_files, 'bytes', null, 'max_files', p_max_purpose_files, 'max_bytes', null);
  end if;
  return claim_upload(
    p_tenant_id => p_tenant_id, p_provider => p_provider, p_purpose => p_purpose, p_sha256 => p_sha256,
    p_bytes => p_bytes, p_filename => p_filename, p_mime_type => p_mime_type, p_metadata => p_metadata,
    p_expires_at => p_expires_at, p_stuck_minutes => p_stuck_minutes, p_max_files => p_max_files,
    p_max_bytes => p_max_bytes, p_owner => p_owner, p_lease_seconds => p_lease_seconds,
    p_tenant_max_files => p_tenant_max_files, p_tenant_max_bytes => p_tenant_max_bytes,
    p_share_max_files => p_share_max_files, p_share_max_bytes => p_share_max_bytes, p_shared => p_shared);
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(9) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function filegate_other_tenant_exists(text) from public, anon, authenticated;
    revoke execute on function tenant_account_shared(text, boolean) from public, anon, authenticated;
    revoke execute on function claim_upload(text, text, text, text, bigint, text, text, jsonb, timestamptz, integer,
                                            integer, bigint, text, integer, integer, bigint, integer, bigint, boolean)
      from public, anon, authenticated;
    revoke execute on function claim_upload_within_purpose_cap(text, text, text, text, bigint, text, text, integer,
      jsonb, timestamptz, integer, integer, bigint, text, integer, integer, bigint, integer, bigint, integer, boolean)
      from public, anon, authenticated;
  end if;
end
$$;
