-- filegate schema 7: what the provider says of a file after upload, and the provider's own expiry.
--
-- Some providers process a file after upload (Gemini: PROCESSING → ACTIVE | FAILED) and delete it
-- themselves after a while (Gemini: 48 hours, its `expirationTime`). provider_state keeps the
-- former: 'processing', 'active' or 'failed'; null for providers without states. The latter caps
-- expires_at: a row expires at the earlier of the client's expires_in and the provider's expiry, so
-- the expiry sweep treats it like any other expiry (the provider's delete then answers 404, which
-- counts as deleted).

alter table provider_file_uploads add column if not exists provider_state text
  constraint provider_state_valid check (provider_state in ('processing', 'active', 'failed'));

-- 0001's complete_upload knew neither the provider's state and expiry nor originals (0006); with new
-- arguments it is another function, and keeping both would make calls by name ambiguous.
drop function if exists complete_upload(uuid, uuid, text, bigint);

-- A provider copy made under a claim that was lost meanwhile (an upload's or a heal's), recorded
-- as an orphan tombstone of the row it was made for, so the provider delete removes it exactly once.
create or replace function filegate_orphan_copy(
  o provider_file_uploads, p_provider_file_id text, p_bytes bigint, p_why text
) returns provider_file_uploads
language sql set timezone to 'UTC' as $$
  insert into provider_file_uploads
    (tenant_id, provider, purpose, sha256, bytes, filename, mime_type, provider_file_id, status,
     deleted_at, deletion_reason, error, created_at)
  values
    (o.tenant_id, o.provider, o.purpose, o.sha256, p_bytes, o.filename, o.mime_type, p_provider_file_id,
     'deleted', now(), 'orphaned', p_why, now())
  returning *
$$;

-- Completes a claim. If the claim was lost (taken over, or the row deleted meanwhile), the
-- provider copy just made is recorded as an orphan tombstone so it is deleted, never leaked.
-- p_provider_expires_at caps expires_at; p_provider_state 'failed' (the provider refused the file
-- while processing it) settles the row `failed` with p_provider_error, its copy still recorded.
create or replace function complete_upload(
  p_id uuid, p_claim_token uuid, p_provider_file_id text, p_bytes bigint default null,
  p_original_stored boolean default false, p_provider_expires_at timestamptz default null, p_provider_state text default null,
  p_provider_error text default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads;
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
    return jsonb_build_object('outcome', 'completed', 'file', filegate_file_json(r));
  end if;
  select * into o from provider_file_uploads where id = p_id;
  r := filegate_orphan_copy(o, p_provider_file_id, coalesce(p_bytes, o.bytes), 'upload claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r),
                            'file', case when o.id is null then null else filegate_file_json(o) end);
end
$$;

-- Records the state a provider now reports for a live, completed file still 'processing' (GET
-- /v1/files/{id} asks while it is not final). 'failed' settles the row `failed` with the
-- provider's message; its provider copy stays recorded, so the orphan sweep deletes it. Returns
-- the row as it now is (unchanged when it was no longer processing, or deleted meanwhile).
create or replace function record_provider_state(
  p_tenant_id text, p_id uuid, p_state text, p_error text default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set provider_state = p_state, updated_at = now(),
         status = case when p_state = 'failed' then 'failed' else status end,
         error = case when p_state = 'failed' then left(coalesce(p_error, 'processing failed'), 2000) else error end
   where id = p_id and tenant_id = p_tenant_id and deleted_at is null and status = 'completed'
     and provider_state = 'processing'
  returning * into r;
  if not found then
    select * into r from provider_file_uploads where id = p_id and tenant_id = p_tenant_id;
    if not found then return null; end if;
  end if;
  return filegate_file_json(r);
end
$$;

-- The heal of 0006 (claim_heal): the remade copy's provider id replaces the old, which joins the
-- history; a copy (Gemini) starts its processing again, and its expiry is the provider's new one.
-- When the claim was lost meanwhile (the file deleted, or the lease taken over) the new copy is
-- recorded as an orphan tombstone (`orphan`), which the caller deletes at the provider.

create or replace function complete_heal(
  p_id uuid, p_heal_token uuid, p_provider_file_id text, p_expires_at timestamptz default null,
  p_provider_state text default null
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
    return jsonb_build_object('outcome', 'healed', 'file', filegate_file_json(r));
  end if;
  select * into o from provider_file_uploads where id = p_id;
  r := filegate_orphan_copy(o, p_provider_file_id, o.bytes, 'heal claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r), 'file', filegate_file_json(o));
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(7) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke execute on function complete_upload(uuid, uuid, text, bigint, boolean, timestamptz, text, text)
      from public, anon, authenticated;
    revoke execute on function record_provider_state(text, uuid, text, text) from public, anon, authenticated;
    revoke execute on function filegate_orphan_copy(provider_file_uploads, text, bigint, text)
      from public, anon, authenticated;
    revoke execute on function complete_heal(uuid, uuid, text, timestamptz, text) from public, anon, authenticated;
  end if;
end
$$;
