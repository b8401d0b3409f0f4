-- filegate schema 2: the dedup probe of many uploads in one call (one round trip, one statement).
--
-- The service gathers the dedup lookups its requests make in one turn of its event loop and asks
-- them together: on a busy replica this replaces N round trips (and N function calls) by one.
-- Same answer per probe as find_live_duplicate, in the order asked. The last_used_at bump (at
-- most once a second per file) takes the row lock with SKIP LOCKED: a batch touches several rows
-- in one transaction, and must neither wait on nor deadlock with another batch or an upload
-- holding one of them (that holder is using the file anyway).

create or replace function find_live_duplicates(p_batch jsonb) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare
  answers jsonb[] := '{}';
  probe jsonb;
  providers text[];
  r provider_file_uploads;
  bumped provider_file_uploads;
begin
  for probe in select value from jsonb_array_elements(p_batch -> 'probes') loop
    providers := array(select jsonb_array_elements_text(probe -> 'providers'));
    select * into r from provider_file_uploads
     where tenant_id = probe ->> 'tenant_id' and provider = any(providers)
       and purpose = probe ->> 'purpose' and sha256 = probe ->> 'sha256'
       and deleted_at is null and status = 'completed'
     order by array_position(providers, provider)
     limit 1;
    if not found then
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

-- As in 0001: on Supabase only the service role may call it.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function find_live_duplicates(jsonb) from public, anon, authenticated;
  end if;
end
$$;
