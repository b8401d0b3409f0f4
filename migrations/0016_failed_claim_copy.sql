-- filegate schema 16: a provider copy whose upload failed after its claim was lost is still owed its
-- provider delete.
--
-- fail_upload with the provider's copy makes the claimed row a tombstone owing that delete. When the
-- claim was no longer the caller's (taken over by another uploader, or by the stuck-row sweep after
-- the upload outlived STUCK_UPLOAD_MINUTES), it answered nothing and the copy was left at the
-- provider with no row naming it. Now the copy is recorded as an orphan tombstone
-- (filegate_unrecorded_copy, as complete_upload does for a lost claim) and returned, so the caller
-- deletes it and the sweep retries that delete if it fails. A repeated call answers the same
-- tombstone.

create or replace function fail_upload(
  p_id uuid, p_claim_token uuid, p_error text, p_provider_file_id text default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads;
begin
  if p_provider_file_id is null then
    update provider_file_uploads
       set status = 'failed', error = left(p_error, 2000), updated_at = now(), claim_token = null
     where id = p_id and claim_token = p_claim_token and deleted_at is null
    returning * into r;
    if not found then return null; end if;
    return filegate_file_json(r);
  end if;
  update provider_file_uploads
     set status = 'deleted', deleted_at = now(), deletion_reason = 'orphaned', error = left(p_error, 2000),
         provider_file_id = p_provider_file_id, provider_deleted = false, updated_at = now(),
         claim_token = null, next_delete_at = null
   where id = p_id and claim_token = p_claim_token and deleted_at is null
  returning * into r;
  if found then return filegate_file_json(r); end if;
  select * into o from provider_file_uploads where id = p_id;
  if not found then return null; end if;
  -- This very call committed before (its answer was lost), or the claim was lost: either way a
  -- tombstone names the copy (filegate_unrecorded_copy finds the one there is, else makes it).
  r := filegate_unrecorded_copy(o, p_provider_file_id, o.bytes, 'upload claim lost before its failure was recorded');
  return filegate_file_json(r);
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(16) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in ('fail_upload')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
