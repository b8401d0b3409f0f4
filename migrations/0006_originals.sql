-- filegate schema 6: durable originals (ORIGINALS_URL).
--
-- A tenant's bytes are kept once per content in an object store, at `<tenant>/<sha256>`. The
-- database knows each object through one row of file_originals, so that
--   * the gauges (objects, bytes) are a query, not a bucket listing;
--   * an original is deleted exactly once, across replicas, and never while a file needs it: a
--     deleter marks the row (deleting_until, a lease) under the row lock after checking that no
--     live row of the tenant has that content and no tombstone still waits for its provider
--     delete; an upload references the original under the same lock, and waits while a delete
--     holds it (then writes the object anew).
-- Files gain `original_stored` (their content is kept), a history of the provider ids a heal
-- replaced, and a heal claim (heal_token, heal_until) so N concurrent `ensure` calls heal once.

alter table provider_file_uploads add column if not exists original_stored boolean not null default false;
alter table provider_file_uploads add column if not exists provider_file_id_history jsonb not null default '[]'::jsonb;
alter table provider_file_uploads add column if not exists heal_token uuid;
alter table provider_file_uploads add column if not exists heal_until timestamptz;

-- The originals job asks, per original, whether any row of the tenant still has its content.
create index if not exists provider_file_uploads_tenant_sha256 on provider_file_uploads (tenant_id, sha256);

create table if not exists file_originals (
  tenant_id          text not null check (length(tenant_id) between 1 and 64),
  sha256             text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  bytes              bigint not null check (bytes >= 0),
  created_at         timestamptz not null default now(),
  last_referenced_at timestamptz not null default now(),
  -- null until the object is known to be written (and again after an interrupted delete)
  stored_at          timestamptz,
  -- a delete in progress holds the original until then (a lease: a crashed deleter lets go)
  deleting_until     timestamptz,
  primary key (tenant_id, sha256)
);
create index if not exists file_originals_unreferenced on file_originals (last_referenced_at);
alter table file_originals enable row level security;

-- The heal claim is bookkeeping, like the upload claim: kept out of the rows handed out.
create or replace function filegate_file_json(r provider_file_uploads) returns jsonb
language sql immutable set timezone to 'UTC' as $$
  select to_jsonb(r) - 'claim_token' - 'next_delete_at' - 'claim_owner' - 'heal_token' - 'heal_until'
$$;

-- ----------------------------------------------------------------------------------------
-- Writing an original

-- Takes a reference on (tenant, sha256) for a claimed upload, copy or heal. Outcomes:
--   referenced  go on; `stored` says whether the object is known to be written already
--   deleting    a delete holds it until `until`: wait, then reference again
-- An expired delete lease may have removed the object: it counts as not stored.
create or replace function reference_original(p_tenant_id text, p_sha256 text, p_bytes bigint) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare o file_originals;
begin
  insert into file_originals (tenant_id, sha256, bytes) values (p_tenant_id, p_sha256, p_bytes)
  on conflict (tenant_id, sha256) do nothing;
  select * into o from file_originals where tenant_id = p_tenant_id and sha256 = p_sha256 for update;
  if o.deleting_until is not null and o.deleting_until > now() then
    return jsonb_build_object('outcome', 'deleting', 'until', o.deleting_until);
  end if;
  update file_originals
     set last_referenced_at = now(), bytes = p_bytes,
         stored_at = case when o.deleting_until is null then stored_at end, deleting_until = null
   where tenant_id = p_tenant_id and sha256 = p_sha256
  returning * into o;
  return jsonb_build_object('outcome', 'referenced', 'stored', o.stored_at is not null);
end
$$;

-- The object is written (or was already there): counts in the gauges from now on.
create or replace function mark_original_stored(p_tenant_id text, p_sha256 text) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update file_originals set stored_at = coalesce(stored_at, now()), last_referenced_at = now()
     where tenant_id = p_tenant_id and sha256 = p_sha256 and deleting_until is null
    returning 1
  )
  select to_jsonb(exists (select 1 from u))
$$;

-- ----------------------------------------------------------------------------------------
-- Deleting originals (the `originals` job)

-- Whether anything of the tenant still needs the content: a live row, or a tombstone whose
-- provider delete is not done yet.
create or replace function filegate_original_in_use(p_tenant_id text, p_sha256 text) returns boolean
language sql stable as $$
  select exists (
    select 1 from provider_file_uploads u
     where u.tenant_id = p_tenant_id and u.sha256 = p_sha256
       and (u.deleted_at is null or u.provider_deleted = false)
  )
$$;

-- Claims up to p_limit originals nothing uses, unreferenced for p_grace_seconds: each is held for
-- p_lease_seconds, during which no upload references it. Rows another replica holds are skipped.
create or replace function claim_original_deletes(p_grace_seconds integer, p_lease_seconds integer, p_limit integer)
returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare v jsonb;
begin
  with c as (
    select o.tenant_id, o.sha256 from file_originals o
     where o.last_referenced_at <= now() - make_interval(secs => p_grace_seconds)
       and (o.deleting_until is null or o.deleting_until <= now())
       and not filegate_original_in_use(o.tenant_id, o.sha256)
     order by o.last_referenced_at
     limit p_limit
     for update skip locked
  ), h as (
    update file_originals o set deleting_until = now() + make_interval(secs => p_lease_seconds)
      from c where o.tenant_id = c.tenant_id and o.sha256 = c.sha256
    returning o.tenant_id, o.sha256, o.bytes, o.stored_at is not null as stored
  )
  select coalesce(jsonb_agg(to_jsonb(h)), '[]'::jsonb) into v from h;
  return v;
end
$$;

-- The dry run's view of claim_original_deletes: what it would claim now, read only.
create or replace function find_original_deletes(p_grace_seconds integer, p_limit integer) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb) from (
    select o.tenant_id, o.sha256, o.bytes, o.stored_at is not null as stored from file_originals o
     where o.last_referenced_at <= now() - make_interval(secs => p_grace_seconds)
       and (o.deleting_until is null or o.deleting_until <= now())
       and not filegate_original_in_use(o.tenant_id, o.sha256)
     order by o.last_referenced_at
     limit p_limit
  ) c
$$;

-- The object is removed: the row goes, unless an upload has referenced it again meanwhile (then
-- the delete's lease was cleared and the row stays: the upload rewrites the object).
create or replace function finish_original_delete(p_tenant_id text, p_sha256 text) returns jsonb
language sql set timezone to 'UTC' as $$
  with d as (
    delete from file_originals
     where tenant_id = p_tenant_id and sha256 = p_sha256 and deleting_until is not null
    returning 1
  )
  select to_jsonb(exists (select 1 from d))
$$;

-- The object could not be removed: let go at once instead of waiting out the lease.
create or replace function release_original_delete(p_tenant_id text, p_sha256 text) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update file_originals set deleting_until = null
     where tenant_id = p_tenant_id and sha256 = p_sha256 and deleting_until is not null
    returning 1
  )
  select to_jsonb(exists (select 1 from u))
$$;

-- Of the objects found in the store (`{"keys": [{tenant_id, sha256}]}`), those no row knows: written by an
-- upload that crashed before it referenced them. The job removes them after the grace.
create or replace function unknown_originals(p_keys jsonb) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(jsonb_build_object('tenant_id', k.tenant_id, 'sha256', k.sha256)), '[]'::jsonb)
    from jsonb_to_recordset(p_keys->'keys') as k(tenant_id text, sha256 text)
   where not exists (select 1 from file_originals o where o.tenant_id = k.tenant_id and o.sha256 = k.sha256)
$$;

-- An object no row knows, about to be removed: held like a claimed delete (a row with a delete
-- lease, not stored) so that an upload referencing the same content meanwhile waits for the
-- removal and then writes the object anew, instead of counting on an object that is going away.
-- False when a row exists by now (an upload referenced it: the object is no longer unknown).
create or replace function claim_unknown_original(p_tenant_id text, p_sha256 text, p_bytes bigint, p_lease_seconds integer)
returns jsonb
language sql set timezone to 'UTC' as $$
  with i as (
    insert into file_originals (tenant_id, sha256, bytes, deleting_until)
    values (p_tenant_id, p_sha256, p_bytes, now() + make_interval(secs => p_lease_seconds))
    on conflict (tenant_id, sha256) do nothing
    returning 1
  )
  select to_jsonb(exists (select 1 from i))
$$;

-- filegate_originals_objects / filegate_originals_bytes
create or replace function originals_usage() returns jsonb
language sql stable as $$
  select jsonb_build_object('objects', count(*), 'bytes', coalesce(sum(bytes), 0))
    from file_originals where stored_at is not null
$$;

-- ----------------------------------------------------------------------------------------
-- Healing a file whose provider copy vanished (POST /v1/files/{id}/ensure, reconcile)

-- Claims the right to check and heal one live completed file. Outcomes:
--   claimed      this caller checks the provider and heals; heal_token must be shown to finish
--   in_progress  another caller holds the heal: wait for it to let go, then read the file
--   not_live     the file is not a live completed row of the tenant (file: null when unknown)
create or replace function claim_heal(p_tenant_id text, p_id uuid, p_lease_seconds integer) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  select * into r from provider_file_uploads where id = p_id and tenant_id = p_tenant_id for update;
  if not found then return jsonb_build_object('outcome', 'not_live', 'file', null); end if;
  if r.deleted_at is not null or r.status <> 'completed' then
    return jsonb_build_object('outcome', 'not_live', 'file', filegate_file_json(r));
  end if;
  if r.heal_until is not null and r.heal_until > now() then
    return jsonb_build_object('outcome', 'in_progress', 'file', filegate_file_json(r), 'heal_until', r.heal_until);
  end if;
  update provider_file_uploads
     set heal_token = gen_random_uuid(), heal_until = now() + make_interval(secs => p_lease_seconds)
   where id = p_id
  returning * into r;
  return jsonb_build_object('outcome', 'claimed', 'heal_token', r.heal_token, 'file', filegate_file_json(r));
end
$$;

create or replace function renew_heal(p_id uuid, p_heal_token uuid, p_lease_seconds integer) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update provider_file_uploads set heal_until = now() + make_interval(secs => p_lease_seconds)
     where id = p_id and heal_token = p_heal_token
    returning 1
  )
  select to_jsonb(exists (select 1 from u))
$$;

-- The provider still has the file (or the heal gave up): let go of the claim.
create or replace function release_heal(p_id uuid, p_heal_token uuid) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update provider_file_uploads set heal_token = null, heal_until = null
     where id = p_id and heal_token = p_heal_token
    returning *
  )
  select filegate_file_json(u) from u
$$;

-- complete_heal (the copy is remade: the new provider id replaces the old, which joins the history)
-- is defined by 0007, which adds the provider's state it records.

-- The provider copy is gone and cannot be remade (no original, or it is lost or corrupt): the
-- row is tombstoned `reconciled`, already deleted at the provider.
create or replace function reconcile_vanished_file(p_id uuid, p_heal_token uuid) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set status = 'deleted', deleted_at = now(), deletion_reason = 'reconciled', updated_at = now(),
         provider_deleted = true, provider_deleted_at = now(), next_delete_at = null,
         heal_token = null, heal_until = null
   where id = p_id and heal_token = p_heal_token and deleted_at is null
  returning * into r;
  if not found then
    select * into r from provider_file_uploads where id = p_id;
  end if;
  return filegate_file_json(r);
end
$$;

-- 0001's reconcile_gone_files tombstoned every row whose provider copy is gone; with originals
-- kept, those rows are healed instead (p_keep_original_stored: left out of the tombstoning; the
-- dry run still lists them, with `original_stored`, so the job knows which to heal).
drop function if exists reconcile_gone_files(text, text[], timestamptz, boolean, integer);

create or replace function reconcile_gone_files(
  p_provider text, p_provider_file_ids text[], p_listed_before timestamptz, p_apply boolean default false,
  p_limit integer default 1000, p_keep_original_stored boolean default false
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare v jsonb;
begin
  if not p_apply then
    select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) into v from (
      select * from provider_file_uploads u
       where u.provider = p_provider and u.deleted_at is null and u.status = 'completed'
         and u.created_at < p_listed_before and not (u.provider_file_id = any(p_provider_file_ids))
       limit p_limit) u;
    return v;
  end if;
  with c as (
    select id from provider_file_uploads u
     where u.provider = p_provider and u.deleted_at is null and u.status = 'completed'
       and u.created_at < p_listed_before and not (u.provider_file_id = any(p_provider_file_ids))
       and not (p_keep_original_stored and u.original_stored)
       and (u.heal_until is null or u.heal_until <= now())
     limit p_limit
     for update skip locked
  ), t as (
    update provider_file_uploads f
       set status = 'deleted', deleted_at = now(), deletion_reason = 'reconciled', updated_at = now(),
           provider_deleted = true, provider_deleted_at = now(), next_delete_at = null
      from c where f.id = c.id
    returning f.*
  )
  select coalesce(jsonb_agg(filegate_file_json(t)), '[]'::jsonb) into v from t;
  return v;
end
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(6) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke all on table file_originals from public, anon, authenticated;
    revoke execute on function reference_original(text, text, bigint) from public, anon, authenticated;
    revoke execute on function mark_original_stored(text, text) from public, anon, authenticated;
    revoke execute on function filegate_original_in_use(text, text) from public, anon, authenticated;
    revoke execute on function claim_original_deletes(integer, integer, integer) from public, anon, authenticated;
    revoke execute on function find_original_deletes(integer, integer) from public, anon, authenticated;
    revoke execute on function finish_original_delete(text, text) from public, anon, authenticated;
    revoke execute on function release_original_delete(text, text) from public, anon, authenticated;
    revoke execute on function unknown_originals(jsonb) from public, anon, authenticated;
    revoke execute on function claim_unknown_original(text, text, bigint, integer) from public, anon, authenticated;
    revoke execute on function originals_usage() from public, anon, authenticated;
    revoke execute on function claim_heal(text, uuid, integer) from public, anon, authenticated;
    revoke execute on function renew_heal(uuid, uuid, integer) from public, anon, authenticated;
    revoke execute on function release_heal(uuid, uuid) from public, anon, authenticated;
    revoke execute on function reconcile_vanished_file(uuid, uuid) from public, anon, authenticated;
    revoke execute on function reconcile_gone_files(text, text[], timestamptz, boolean, integer, boolean)
      from public, anon, authenticated;
  end if;
end
$$;
