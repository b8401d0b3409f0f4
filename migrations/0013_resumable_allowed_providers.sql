-- Schema 13: a resumable upload remembers the providers its creator's key may upload to, so that
-- a completion made later (by the resumable job, on any replica) obeys the same allowlist as the
-- request that created it: `auto` then chooses among those providers only.

alter table resumable_uploads add column if not exists allowed_providers text[];

drop function if exists create_resumable_upload(text, text, text, text, text, bigint, integer, text, jsonb, integer,
                                                text, integer, bigint, integer, bigint, boolean);

-- As in 0012, and the creator's allowlist kept on the row (null = every provider).
create or replace function create_resumable_upload(
  p_tenant_id text, p_protocol text, p_provider text, p_filename text, p_mime_type text, p_bytes bigint,
  p_ttl_seconds integer, p_purpose text default null, p_metadata jsonb default '{}'::jsonb,
  p_file_expires_in integer default null, p_sha256 text default null,
  p_tenant_max_files integer default null, p_tenant_max_bytes bigint default null,
  p_share_max_files integer default null, p_share_max_bytes bigint default null, p_shared boolean default false,
  p_allowed_providers text[] default null
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
                                 file_expires_in, sha256, expires_at, allowed_providers)
  values (p_tenant_id, p_protocol, p_provider, p_purpose, p_filename, p_mime_type, p_bytes,
          coalesce(p_metadata, '{}'::jsonb), p_file_expires_in, p_sha256,
          now() + make_interval(secs => p_ttl_seconds), p_allowed_providers)
  returning * into u;
  return jsonb_build_object('outcome', 'created', 'upload', filegate_resumable_json(u));
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(13) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in ('create_resumable_upload')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
