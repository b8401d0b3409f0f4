-- Schema 14: a provider copy whose settle could not be recorded (the database cut while the
-- provider answered) is never lost. The settles may be called again with the same arguments: a
-- call that committed but whose answer never arrived is answered the same the second time, never
-- as a lost claim (which would make the live copy an orphan and delete it). And a copy that could
-- not be settled in time is recorded once the database is back (record_unsettled_copy): kept when
-- a settle did commit after all, else a tombstone owing its provider delete.

-- As in 0008, and a call repeated after it committed answers `completed` with the row it made.
create or replace function complete_upload(
  p_id uuid, p_claim_token uuid, p_provider_file_id text, p_bytes bigint default null,
  p_original_stored boolean default false, p_provider_expires_at timestamptz default null, p_provider_state text default null,
  p_provider_error text default null, p_audit jsonb default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads; v_copy boolean := p_audit->>'action' = 'file.copy';
begin
  update provider_file_uploads
     set status = case when p_provider_state = 'failed' then 'failed' else 'completed' end,
         error = case when p_provider_state = 'failed' then left(coalesce(p_provider_error, 'processing failed'), 2000) end,
         provider_file_id = p_provider_file_id, updated_at = now(),
         last_used_at = now(), claim_token = null, bytes = coalesce(p_bytes, bytes),
         expires_at = least(expires_at, p_provider_expires_at), provider_state = p_provider_state,
         original_stored = original_stored or p_original_stored
   where id = p_id and claim_token = p_claim_token and status in ('pending', 'uploading') and deleted_at is null
  returning * into r;
  if found then
    if r.status = 'completed' then
      perform filegate_audit(p_audit, case when v_copy then 'file.copy' else 'file.upload' end, r.tenant_id, r.id::text,
        jsonb_build_object('provider', r.provider, 'purpose', r.purpose, 'bytes', r.bytes, 'sha256', r.sha256)
          || case when v_copy then jsonb_build_object('source_id', p_audit->'detail'->>'source_id') else '{}'::jsonb end);
    end if;
    return jsonb_build_object('outcome', 'completed', 'file', filegate_file_json(r));
  end if;
  select * into o from provider_file_uploads where id = p_id;
  -- This very settle committed before (its answer was lost): the row holds the copy already.
  if o.deleted_at is null and o.provider_file_id = p_provider_file_id and o.status in ('completed', 'failed') then
    return jsonb_build_object('outcome', 'completed', 'file', filegate_file_json(o));
  end if;
  r := filegate_unrecorded_copy(o, p_provider_file_id, coalesce(p_bytes, o.bytes), 'upload claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r),
                            'file', case when o.id is null then null else filegate_file_json(o) end);
end
$$;

-- As in 0001, and a call repeated after it committed answers the tombstone it made (its delete
-- still owed), rather than nothing.
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
    if not found then
      select * into r from provider_file_uploads
       where id = p_id and deleted_at is not null and provider_file_id = p_provider_file_id;
    end if;
  end if;
  if not found then return null; end if;
  return filegate_file_json(r);
end
$$;

-- As in 0008, and a call repeated after it committed answers `healed` with the row it made.
create or replace function complete_heal(
  p_id uuid, p_heal_token uuid, p_provider_file_id text, p_expires_at timestamptz default null,
  p_provider_state text default null, p_audit jsonb default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads;
begin
  update provider_file_uploads
     set provider_file_id_history = provider_file_id_history || jsonb_build_array(jsonb_build_object(
           'provider_file_id', provider_file_id, 'replaced_at', now(), 'reason', 'healed')),
         provider_file_id = p_provider_file_id, expires_at = coalesce(p_expires_at, expires_at),
         provider_state = p_provider_state,
         heal_token = null, heal_until = null, updated_at = now(), last_used_at = now(), error = null
   where id = p_id and heal_token = p_heal_token and deleted_at is null and status = 'completed'
  returning * into r;
  if found then
    perform filegate_audit(p_audit, 'file.heal', r.tenant_id, r.id::text, jsonb_build_object(
      'provider', r.provider, 'replaced_provider_file_id', r.provider_file_id_history -> -1 ->> 'provider_file_id'));
    return jsonb_build_object('outcome', 'healed', 'file', filegate_file_json(r));
  end if;
  select * into o from provider_file_uploads where id = p_id;
  if o.deleted_at is null and o.provider_file_id = p_provider_file_id then
    return jsonb_build_object('outcome', 'healed', 'file', filegate_file_json(o));
  end if;
  r := filegate_unrecorded_copy(o, p_provider_file_id, o.bytes, 'heal claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r), 'file', filegate_file_json(o));
end
$$;

-- The tombstone owing the delete of a provider copy no row holds: the one already made for it (a
-- repeated call), else a new one beside `o` (filegate_orphan_copy).
create or replace function filegate_unrecorded_copy(
  o provider_file_uploads, p_provider_file_id text, p_bytes bigint, p_why text
) returns provider_file_uploads
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  select * into r from provider_file_uploads
   where provider = o.provider and provider_file_id = p_provider_file_id and deleted_at is not null
   limit 1;
  if found then return r; end if;
  return filegate_orphan_copy(o, p_provider_file_id, p_bytes, p_why);
end
$$;

-- A provider copy made for row p_id (an upload's claim, or a heal's) whose settle could not be
-- recorded, once the database answers again: `settled` when a row holds it live (a settle did
-- commit; nothing to do), else `orphan` with the tombstone owing its provider delete. The claim
-- itself, when still this caller's, becomes that tombstone (as fail_upload does); a heal claim
-- still this caller's is let go. Calling it again answers the same.
create or replace function record_unsettled_copy(
  p_id uuid, p_provider_file_id text, p_why text,
  p_claim_token uuid default null, p_heal_token uuid default null, p_bytes bigint default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads;
begin
  select * into o from provider_file_uploads where id = p_id for update;
  if not found then return null; end if;
  select * into r from provider_file_uploads
   where provider = o.provider and provider_file_id = p_provider_file_id and deleted_at is null
   limit 1;
  if found then return jsonb_build_object('outcome', 'settled', 'file', filegate_file_json(r)); end if;
  if p_heal_token is not null and o.heal_token = p_heal_token then
    update provider_file_uploads set heal_token = null, heal_until = null, updated_at = now() where id = p_id;
  end if;
  if p_claim_token is not null and o.claim_token = p_claim_token and o.deleted_at is null
     and o.status in ('pending', 'uploading') then
    update provider_file_uploads
       set status = 'deleted', deleted_at = now(), deletion_reason = 'orphaned', error = left(p_why, 2000),
           provider_file_id = p_provider_file_id, provider_deleted = false, updated_at = now(),
           bytes = coalesce(p_bytes, bytes), claim_token = null, next_delete_at = null
     where id = p_id
    returning * into r;
  else
    r := filegate_unrecorded_copy(o, p_provider_file_id, coalesce(p_bytes, o.bytes), p_why);
  end if;
  return jsonb_build_object('outcome', 'orphan', 'file', filegate_file_json(r));
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(14) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema()
         and p.proname in ('complete_upload', 'fail_upload', 'complete_heal', 'filegate_unrecorded_copy',
                           'record_unsettled_copy')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
