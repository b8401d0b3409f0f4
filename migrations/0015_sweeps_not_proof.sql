-- filegate schema 15: what a listing does not show is not proof that it is gone; claimed original
-- deletes are held by a lease their holder renews; the last reconcile's findings, per provider.
--
-- * A provider copy that a heal replaced is recorded as an orphan tombstone (filegate_orphan_copy),
--   so the provider delete removes it like any other; a 404 there means it was gone already.
-- * Rows tombstoned `reconciled` because a listing did not show their copy (reconcile_gone_files,
--   or a heal whose check was a listing) may be left waiting for their provider delete
--   (p_provider_deleted false): the delete then settles it, a 404 counting as deleted. Without the
--   argument both keep their earlier meaning (already gone), for callers of schema 14.
-- * reconcile_gone_files leaves out rows changed since the listing began (a heal that replaced the
--   copy meanwhile gave the row a provider id the listing could not show).
-- * renew_original_deletes: the originals job holds what it claimed with a short lease renewed
--   while it works, so a run that dies or loses the database lets go within that lease.
-- * provider_reconcile_results: the unknown provider files each provider had at the last reconcile
--   (filegate_provider_unknown_files), the same on every replica whichever one ran it.

-- As in 0014 (a repeated call answers as the first did), and the replaced copy recorded as an
-- orphan tombstone (`replaced` in the answer).
create or replace function complete_heal(
  p_id uuid, p_heal_token uuid, p_provider_file_id text, p_expires_at timestamptz default null,
  p_provider_state text default null, p_audit jsonb default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads; o provider_file_uploads; replaced provider_file_uploads; v_old text;
begin
  select * into o from provider_file_uploads
   where id = p_id and heal_token = p_heal_token and deleted_at is null and status = 'completed'
     for update;
  if found then
    v_old := o.provider_file_id;
    update provider_file_uploads
       set provider_file_id_history = provider_file_id_history || jsonb_build_array(jsonb_build_object(
             'provider_file_id', provider_file_id, 'replaced_at', now(), 'reason', 'healed')),
           provider_file_id = p_provider_file_id, expires_at = coalesce(p_expires_at, expires_at),
           provider_state = p_provider_state,
           heal_token = null, heal_until = null, updated_at = now(), last_used_at = now(), error = null
     where id = p_id
    returning * into r;
    if v_old is not null and v_old <> p_provider_file_id then
      replaced := filegate_unrecorded_copy(o, v_old, o.bytes, 'provider copy replaced by a heal');
    end if;
    perform filegate_audit(p_audit, 'file.heal', r.tenant_id, r.id::text, jsonb_build_object(
      'provider', r.provider, 'replaced_provider_file_id', v_old));
    return jsonb_build_object('outcome', 'healed', 'file', filegate_file_json(r),
                              'replaced', case when replaced.id is null then null else filegate_file_json(replaced) end);
  end if;
  select * into o from provider_file_uploads where id = p_id;
  -- A call repeated after it committed (its answer lost to a cut): the row it made (as 0014).
  if o.deleted_at is null and o.provider_file_id = p_provider_file_id then
    return jsonb_build_object('outcome', 'healed', 'file', filegate_file_json(o));
  end if;
  r := filegate_unrecorded_copy(o, p_provider_file_id, o.bytes, 'heal claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r), 'file', filegate_file_json(o));
end
$$;

-- As in 0008, with p_provider_deleted: false when the copy was only missing from a listing.
drop function if exists reconcile_vanished_file(uuid, uuid, jsonb);

create or replace function reconcile_vanished_file(
  p_id uuid, p_heal_token uuid, p_audit jsonb default null, p_provider_deleted boolean default true
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set status = 'deleted', deleted_at = now(), deletion_reason = 'reconciled', updated_at = now(),
         provider_deleted = p_provider_deleted or provider_file_id is null,
         provider_deleted_at = case when p_provider_deleted or provider_file_id is null then now() end,
         next_delete_at = null, heal_token = null, heal_until = null
   where id = p_id and heal_token = p_heal_token and deleted_at is null
  returning * into r;
  if found then
    perform filegate_audit(p_audit, 'file.delete', r.tenant_id, r.id::text,
                           jsonb_build_object('reason', 'reconciled', 'provider', r.provider));
  else
    select * into r from provider_file_uploads where id = p_id;
  end if;
  return filegate_file_json(r);
end
$$;

-- As in 0008, with p_provider_deleted (false: the tombstones wait for their provider delete), and
-- rows changed since the listing began left for the next run.
drop function if exists reconcile_gone_files(text, text[], timestamptz, boolean, integer, boolean, jsonb);

create or replace function reconcile_gone_files(
  p_provider text, p_provider_file_ids text[], p_listed_before timestamptz, p_apply boolean default false,
  p_limit integer default 1000, p_keep_original_stored boolean default false, p_audit jsonb default null,
  p_provider_deleted boolean default true
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare v jsonb;
begin
  if not p_apply then
    select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) into v from (
      select * from provider_file_uploads u
       where u.provider = p_provider and u.deleted_at is null and u.status = 'completed'
         and u.created_at < p_listed_before and u.updated_at < p_listed_before
         and not (u.provider_file_id = any(p_provider_file_ids))
       limit p_limit) u;
    return v;
  end if;
  with c as (
    select id from provider_file_uploads u
     where u.provider = p_provider and u.deleted_at is null and u.status = 'completed'
       and u.created_at < p_listed_before and u.updated_at < p_listed_before
       and not (u.provider_file_id = any(p_provider_file_ids))
       and not (p_keep_original_stored and u.original_stored)
       and (u.heal_until is null or u.heal_until <= now())
     limit p_limit
     for update skip locked
  ), t as (
    update provider_file_uploads f
       set status = 'deleted', deleted_at = now(), deletion_reason = 'reconciled', updated_at = now(),
           provider_deleted = p_provider_deleted or f.provider_file_id is null,
           provider_deleted_at = case when p_provider_deleted or f.provider_file_id is null then now() end,
           next_delete_at = null
      from c where f.id = c.id
    returning f.*
  ), a as (
    insert into audit_events (tenant_id, actor, action, target, request_id, detail)
    select t.tenant_id, 'system', 'file.delete', t.id::text, left(p_audit->>'request_id', 128),
           jsonb_build_object('reason', 'reconciled', 'provider', t.provider)
      from t
  )
  select coalesce(jsonb_agg(filegate_file_json(t)), '[]'::jsonb) into v from t;
  return v;
end
$$;

-- Keeps the claims of originals the caller still works on (`{"keys": [{tenant_id, sha256}]}`) for
-- p_lease_seconds more; a claim whose lease ran out meanwhile is not taken back. The number kept.
create or replace function renew_original_deletes(p_keys jsonb, p_lease_seconds integer) returns jsonb
language sql set timezone to 'UTC' as $$
  with u as (
    update file_originals o set deleting_until = now() + make_interval(secs => p_lease_seconds)
      from jsonb_to_recordset(p_keys->'keys') as k(tenant_id text, sha256 text)
     where o.tenant_id = k.tenant_id and o.sha256 = k.sha256 and o.deleting_until > now()
    returning 1
  )
  select to_jsonb(count(*)) from u
$$;

create table if not exists provider_reconcile_results (
  provider      text primary key check (length(provider) between 1 and 64),
  unknown_files integer not null check (unknown_files >= 0),
  finished_at   timestamptz not null default now()
);
alter table provider_reconcile_results enable row level security;

-- What one provider's reconcile found: its files no row knows, older than the grace, still there.
create or replace function record_reconcile_result(p_provider text, p_unknown_files integer) returns jsonb
language sql set timezone to 'UTC' as $$
  insert into provider_reconcile_results (provider, unknown_files, finished_at)
  values (p_provider, p_unknown_files, now())
  on conflict (provider) do update set unknown_files = excluded.unknown_files, finished_at = excluded.finished_at
  returning jsonb_build_object('provider', provider, 'unknown_files', unknown_files, 'finished_at', finished_at)
$$;

create or replace function reconcile_results() returns jsonb
language sql stable set timezone to 'UTC' as $$
  select coalesce(jsonb_agg(jsonb_build_object('provider', provider, 'unknown_files', unknown_files,
                                               'finished_at', finished_at) order by provider), '[]'::jsonb)
    from provider_reconcile_results
$$;

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(15) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in (
         'complete_heal', 'reconcile_vanished_file', 'reconcile_gone_files', 'renew_original_deletes',
         'record_reconcile_result', 'reconcile_results')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
