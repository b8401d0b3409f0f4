-- filegate schema 2: the dedup probe of many uploads in one call (one round trip, one statement).
--
-- The service gathers the dedup lookups its requests make in one turn of its event loop and asks
-- them together: on a busy replica this replaces N round trips (and N function calls) by one.
-- Same answer per probe as find_live_duplicate, in the order asked. The last_used_at bump (at
-- most once a second per file) takes the row lock with SKIP LOCKED: a batch touches several rows
-- in one transaction, and must neither wait on nor deadlock with another batch or an upload
-- holding one of them (that holder is using the file anyway).

-- The live copy of (tenant, one of the providers in order of preference, purpose, sha256), or a
-- null row: the one selection every dedup lookup makes, single or batched.
create or replace function filegate_live_duplicate(
  p_tenant_id text, p_providers text[], p_purpose text, p_sha256 text
) returns provider_file_uploads
language plpgsql stable as $$
declare r provider_file_uploads;
begin
  select * into r from provider_file_uploads
   where tenant_id = p_tenant_id and provider = any(p_providers) and purpose = p_purpose
     and sha256 = p_sha256 and deleted_at is null and status = 'completed'
   order by array_position(p_providers, provider)
   limit 1;
  return r;
end
$$;

-- 0001's single lookup (claim_upload, find_live_duplicate) now selects through it; as before, its
-- bump waits for the row.
create or replace function filegate_touch_live_duplicate(
  p_tenant_id text, p_providers text[], p_purpose text, p_sha256 text
) returns provider_file_uploads
language plpgsql as $$
declare r provider_file_uploads;
begin
  r := filegate_live_duplicate(p_tenant_id, p_providers, p_purpose, p_sha256);
  if r.id is not null and r.last_used_at < now() - interval '1 second' then
    update provider_file_uploads set last_used_at = now()
     where id = r.id and deleted_at is null and status = 'completed'
    returning * into r;
  end if;
  return r;
end
$$;

create or replace function find_live_duplicates(p_batch jsonb) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  answers jsonb[] := '{}';
  probe jsonb;
  r provider_file_uploads;
  bumped provider_file_uploads;
begin
  for probe in select value from jsonb_array_elements(p_batch -> 'probes') loop
    r := filegate_live_duplicate(probe ->> 'tenant_id', array(select jsonb_array_elements_text(probe -> 'providers')),
                                 probe ->> 'purpose', probe ->> 'sha256');
    if r.id is null then
      answers := answers || 'null'::jsonb;
      continue;
    end if;
    if r.last_used_at < now() - interval '1 second' then
      update provider_file_uploads u set last_used_at = now()
       where u.id = (select l.id from provider_file_uploads l
                      where l.id = r.id and l.deleted_at is null and l.status = 'completed'
                      for update skip locked)
      returning u.* into bumped;
      -- Locked by someone else: answer with the row as read; its holder is using it anyway.
      if found then r := bumped; end if;
    end if;
    answers := answers || filegate_file_json(r);
  end loop;
  return to_jsonb(answers);
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(2) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function find_live_duplicates(jsonb) from public, anon, authenticated;
    revoke execute on function filegate_live_duplicate(text, text[], text, text) from public, anon, authenticated;
  end if;
end
$$;
