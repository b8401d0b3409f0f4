-- filegate schema 5: per-purpose file counts (GLM documents them: file-extract and code-interpreter
-- 100 files, agent and batch 1,000, per account; docs.bigmodel.cn 上传文件).
--
-- claim_upload_within_purpose_cap takes the same advisory lock as claim_upload's account caps,
-- counts the rows of (provider, purpose) that occupy the provider account (in flight, live, or
-- awaiting their provider delete), and refuses a new row past the cap before any provider call.
-- Content already claimed (a live copy, one in flight, a failed row to retry) adds no file and
-- goes on to claim_upload unchanged, which also applies the account caps in the same transaction.

create or replace function purpose_usage(p_provider text default null) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(jsonb_build_object('provider', provider, 'purpose', purpose, 'files', files, 'bytes', bytes)),
                  '[]'::jsonb)
  from (
    select u.provider, u.purpose, count(*) as files, coalesce(sum(u.bytes), 0) as bytes
    from provider_file_uploads u
    where u.provider_deleted = false and filegate_occupies_provider(u)
      and (p_provider is null or u.provider = p_provider)
    group by u.provider, u.purpose
  ) s
$$;

create or replace function claim_upload_within_purpose_cap(
  p_tenant_id text, p_provider text, p_purpose text, p_sha256 text, p_bytes bigint,
  p_filename text, p_mime_type text, p_max_purpose_files integer,
  p_metadata jsonb default '{}'::jsonb, p_expires_at timestamptz default null,
  p_stuck_minutes integer default 30, p_max_files integer default null, p_max_bytes bigint default null,
  p_owner text default null, p_lease_seconds integer default 10,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  v_files bigint;
begin
  -- The lock claim_upload takes for the account caps (re-entrant in this transaction), so two
  -- replicas cannot both take the last slot of a purpose.
  perform pg_advisory_xact_lock(hashtext('filegate:quota:' || p_provider));
  select count(*) into v_files
    from provider_file_uploads u
   where u.provider = p_provider and u.purpose = p_purpose
     and u.provider_deleted = false and filegate_occupies_provider(u);
  if v_files + 1 > p_max_purpose_files and not exists (
    select 1 from provider_file_uploads k
     where k.tenant_id = p_tenant_id and k.provider = p_provider and k.purpose = p_purpose
       and k.sha256 = p_sha256 and k.deleted_at is null
  ) then
    return jsonb_build_object('outcome', 'quota_exceeded', 'scope', 'purpose', 'purpose', p_purpose,
                              'files', v_files, 'bytes', null, 'max_files', p_max_purpose_files, 'max_bytes', null);
  end if;
  return claim_upload(
    p_tenant_id => p_tenant_id, p_provider => p_provider, p_purpose => p_purpose, p_sha256 => p_sha256,
    p_bytes => p_bytes, p_filename => p_filename, p_mime_type => p_mime_type, p_metadata => p_metadata,
    p_expires_at => p_expires_at, p_stuck_minutes => p_stuck_minutes, p_max_files => p_max_files,
    p_max_bytes => p_max_bytes, p_owner => p_owner, p_lease_seconds => p_lease_seconds,
    p_tenant_max_files => p_tenant_max_files, p_tenant_max_bytes => p_tenant_max_bytes);
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(5) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function purpose_usage(text) from public, anon, authenticated;
    revoke execute on function claim_upload_within_purpose_cap(text, text, text, text, bigint, text, text, integer,
      jsonb, timestamptz, integer, integer, bigint, text, integer, integer, bigint) from public, anon, authenticated;
  end if;
end
$$;
