-- filegate schema 8: access. API keys kept in the database (only their SHA-256), the audit of every
-- change (append-only, written in the same transaction as the change it records), and tenant ids
-- widened to 128 characters for identity-provider subjects (`auth0|…`, e-mail addresses).
--
-- Key changes are announced on the channel `filegate_keys` (payload `<event>:<key id>`), delivered
-- when the transaction commits: every replica listening drops that key from its cache, so a revoke
-- or rotation is refused everywhere within a second.

-- ----------------------------------------------------------------------------------------
-- Tenant ids: 1-128 of [A-Za-z0-9._:@|-], starting with a letter or digit (the service checks the
-- same rule before any row is written; the tables hold it too). Added NOT VALID then validated, so
-- the check does not hold an exclusive lock while it reads existing rows (which all pass: the old
-- rule was narrower).

alter table provider_file_uploads drop constraint if exists provider_file_uploads_tenant_id_check;
alter table provider_file_uploads add constraint provider_file_uploads_tenant_id_check
  check (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@|-]{0,127}$') not valid;
alter table provider_file_uploads validate constraint provider_file_uploads_tenant_id_check;

alter table file_originals drop constraint if exists file_originals_tenant_id_check;
alter table file_originals add constraint file_originals_tenant_id_check
  check (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@|-]{0,127}$') not valid;
alter table file_originals validate constraint file_originals_tenant_id_check;

-- ----------------------------------------------------------------------------------------
-- Keys. A key is `fg_<id>_<secret>`: the id is public (looked up by it), the secret is shown once
-- and only the SHA-256 of the whole key is kept. A rotation keeps the previous digest until
-- previous_until (the grace period), then it no longer authenticates. Keys are never deleted: a
-- revoked or expired key stays for the record.

create table if not exists filegate_api_keys (
  id              text primary key check (id ~ '^[a-z0-9]{16}$'),
  tenant_id       text not null check (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@|-]{0,127}$'),
  name            text check (length(name) <= 200),
  scopes          text[] not null
                    check (cardinality(scopes) >= 1 and scopes <@ array['files:read', 'files:write', 'keys', 'admin']),
  providers       text[],
  key_sha256      text not null check (key_sha256 ~ '^[0-9a-f]{64}$'),
  key_hint        text not null check (length(key_hint) = 4),
  previous_sha256 text check (previous_sha256 ~ '^[0-9a-f]{64}$'),
  previous_until  timestamptz,
  created_at      timestamptz not null default now(),
  created_by      text not null check (length(created_by) between 1 and 300),
  expires_at      timestamptz,
  revoked_at      timestamptz,
  rotated_at      timestamptz,
  last_used_at    timestamptz
);

-- GET /v1/keys: newest first, per tenant or across tenants (admin), keyset on (created_at, id).
create index if not exists filegate_api_keys_tenant_created on filegate_api_keys (tenant_id, created_at desc, id desc);
create index if not exists filegate_api_keys_created on filegate_api_keys (created_at desc, id desc);

-- ----------------------------------------------------------------------------------------
-- The audit: one row per change, never updated; removed only by the retention sweep.

create table if not exists audit_events (
  id         uuid primary key default gen_random_uuid(),
  at         timestamptz not null default now(),
  tenant_id  text,
  actor      text not null check (length(actor) between 1 and 300),
  action     text not null check (action ~ '^[a-z]+\.[a-z_]+$'),
  target     text check (length(target) <= 300),
  request_id text check (length(request_id) <= 128),
  ip         text check (length(ip) <= 64),
  detail     jsonb not null default '{}'::jsonb check (jsonb_typeof(detail) = 'object')
);

create index if not exists audit_events_at on audit_events (at desc, id desc);
create index if not exists audit_events_tenant_at on audit_events (tenant_id, at desc, id desc);

-- Append-only: an update is refused, and so is a delete unless the retention sweep
-- (purge_audit_events) asks for it within its own transaction.
create or replace function filegate_audit_append_only() returns trigger
language plpgsql as $$
begin
  if tg_op = 'DELETE' and current_setting('filegate.audit_purge', true) = 'on' then
    return old;
  end if;
  raise exception 'audit_events is append-only (% refused)', tg_op using errcode = '42501';
end
$$;

create or replace trigger audit_events_append_only before update or delete on audit_events
  for each row execute function filegate_audit_append_only();
create or replace trigger audit_events_no_truncate before truncate on audit_events
  for each statement execute function filegate_audit_append_only();

alter table filegate_api_keys enable row level security;
alter table audit_events enable row level security;

-- Records one event. p_audit is who acts: {actor, request_id, ip}; null is the service itself
-- (`system`). Called by the functions that make the change, in their transaction.
create or replace function filegate_audit(
  p_audit jsonb, p_action text, p_tenant_id text, p_target text, p_detail jsonb default '{}'::jsonb
) returns void
language sql as $$
  insert into audit_events (tenant_id, actor, action, target, request_id, ip, detail)
  values (p_tenant_id, coalesce(nullif(left(p_audit->>'actor', 300), ''), 'system'), p_action, left(p_target, 300),
          left(p_audit->>'request_id', 128), left(p_audit->>'ip', 64), coalesce(p_detail, '{}'::jsonb))
$$;

create or replace function filegate_audit_json(e audit_events) returns jsonb
language sql immutable set timezone to 'UTC' as $$
  select to_jsonb(e)
$$;

-- A cleanup run asked for by someone (POST /v1/cleanup, `filegate cleanup`): what it did.
create or replace function record_audit_event(
  p_audit jsonb, p_action text, p_tenant_id text default null, p_target text default null,
  p_detail jsonb default '{}'::jsonb
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
begin
  perform filegate_audit(p_audit, p_action, p_tenant_id, p_target, p_detail);
  return to_jsonb(true);
end
$$;

-- GET /v1/audit: newest first, keyset on (at, id); filters by tenant (null: every tenant), action,
-- target and a lower bound on `at`.
create or replace function list_audit_events(
  p_limit integer, p_tenant_id text default null, p_action text default null, p_target text default null,
  p_since timestamptz default null, p_after_at timestamptz default null, p_after_id uuid default null
) returns jsonb
language sql stable set timezone to 'UTC' as $$
  with page as (
    select e.* from audit_events e
     where (p_tenant_id is null or e.tenant_id = p_tenant_id)
       and (p_action is null or e.action = p_action)
       and (p_target is null or e.target = p_target)
       and (p_since is null or e.at >= p_since)
       and (p_after_at is null or (e.at, e.id) < (p_after_at, p_after_id))
     order by e.at desc, e.id desc
     limit p_limit + 1
  )
  select jsonb_build_object(
    'data', coalesce((select jsonb_agg(filegate_audit_json(p) order by p.at desc, p.id desc)
                        from (select * from page order by at desc, id desc limit p_limit) p), '[]'::jsonb),
    'has_more', (select count(*) > p_limit from page))
$$;

-- The retention sweep: events older than p_retention_days, oldest first, p_limit at a time.
create or replace function purge_audit_events(p_retention_days integer, p_limit integer) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare v_n integer;
begin
  perform set_config('filegate.audit_purge', 'on', true);
  with c as (
    select id from audit_events where at < now() - make_interval(days => p_retention_days)
     order by at limit p_limit for update skip locked
  ), d as (delete from audit_events e using c where e.id = c.id returning 1)
  select count(*) into v_n from d;
  perform set_config('filegate.audit_purge', 'off', true);
  return to_jsonb(v_n);
end
$$;

create or replace function count_audit_purge_candidates(p_retention_days integer) returns jsonb
language sql stable as $$
  select to_jsonb(count(*)) from audit_events where at < now() - make_interval(days => p_retention_days)
$$;

-- ----------------------------------------------------------------------------------------
-- Keys: what the API shows (never a digest), and what authentication reads.

create or replace function filegate_key_json(k filegate_api_keys) returns jsonb
language sql immutable set timezone to 'UTC' as $$
  select jsonb_build_object(
    'id', k.id, 'tenant_id', k.tenant_id, 'name', k.name, 'scopes', to_jsonb(k.scopes),
    'providers', to_jsonb(k.providers), 'key_hint', k.key_hint, 'created_at', k.created_at,
    'created_by', k.created_by, 'expires_at', k.expires_at, 'revoked_at', k.revoked_at,
    'rotated_at', k.rotated_at, 'previous_key_expires_at', k.previous_until, 'last_used_at', k.last_used_at)
$$;

create or replace function create_api_key(
  p_id text, p_tenant_id text, p_scopes text[], p_key_sha256 text, p_key_hint text, p_created_by text,
  p_name text default null, p_providers text[] default null, p_expires_at timestamptz default null,
  p_audit jsonb default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare k filegate_api_keys;
begin
  insert into filegate_api_keys (id, tenant_id, name, scopes, providers, key_sha256, key_hint, expires_at, created_by)
  values (p_id, p_tenant_id, p_name, p_scopes, p_providers, p_key_sha256, p_key_hint, p_expires_at, p_created_by)
  returning * into k;
  perform filegate_audit(p_audit, 'key.create', k.tenant_id, k.id, jsonb_build_object(
    'name', k.name, 'scopes', to_jsonb(k.scopes), 'providers', to_jsonb(k.providers), 'expires_at', k.expires_at));
  perform pg_notify('filegate_keys', 'create:' || k.id);
  return filegate_key_json(k);
end
$$;

create or replace function get_api_key(p_id text) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select filegate_key_json(k) from filegate_api_keys k where k.id = p_id
$$;

-- What authentication needs of one key: its digests, grace, expiry, revocation, tenant, scopes and
-- providers. Null for an unknown id.
create or replace function find_api_key_for_auth(p_id text) returns jsonb
language sql stable set timezone to 'UTC' as $$
  select jsonb_build_object(
    'id', k.id, 'tenant_id', k.tenant_id, 'scopes', to_jsonb(k.scopes), 'providers', to_jsonb(k.providers),
    'key_sha256', k.key_sha256, 'previous_sha256', k.previous_sha256, 'previous_until', k.previous_until,
    'expires_at', k.expires_at, 'revoked_at', k.revoked_at, 'last_used_at', k.last_used_at)
    from filegate_api_keys k where k.id = p_id
$$;

create or replace function list_api_keys(
  p_limit integer, p_tenant_id text default null, p_after_created_at timestamptz default null,
  p_after_id text default null
) returns jsonb
language sql stable set timezone to 'UTC' as $$
  with page as (
    select k.* from filegate_api_keys k
     where (p_tenant_id is null or k.tenant_id = p_tenant_id)
       and (p_after_created_at is null or (k.created_at, k.id) < (p_after_created_at, p_after_id))
     order by k.created_at desc, k.id desc
     limit p_limit + 1
  )
  select jsonb_build_object(
    'data', coalesce((select jsonb_agg(filegate_key_json(p) order by p.created_at desc, p.id desc)
                        from (select * from page order by created_at desc, id desc limit p_limit) p), '[]'::jsonb),
    'has_more', (select count(*) > p_limit from page))
$$;

-- Revokes a key (idempotent: a revoked key is returned as it is, and nothing is recorded again).
create or replace function revoke_api_key(p_id text, p_audit jsonb default null) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare k filegate_api_keys;
begin
  update filegate_api_keys set revoked_at = now(), previous_sha256 = null, previous_until = null
   where id = p_id and revoked_at is null
  returning * into k;
  if not found then
    select * into k from filegate_api_keys where id = p_id;
    if not found then return null; end if;
    return filegate_key_json(k);
  end if;
  perform filegate_audit(p_audit, 'key.revoke', k.tenant_id, k.id, '{}'::jsonb);
  perform pg_notify('filegate_keys', 'revoke:' || k.id);
  return filegate_key_json(k);
end
$$;

-- A new secret for the same key id. The previous one keeps working for p_grace_seconds (0: it stops
-- at once); a previous secret still in its grace from an earlier rotation stops now. Outcomes:
-- rotated, or revoked / expired (nothing changed); null for an unknown id.
create or replace function rotate_api_key(
  p_id text, p_key_sha256 text, p_key_hint text, p_grace_seconds integer default 0, p_audit jsonb default null
) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare k filegate_api_keys;
begin
  select * into k from filegate_api_keys where id = p_id for update;
  if not found then return null; end if;
  if k.revoked_at is not null then
    return jsonb_build_object('outcome', 'revoked', 'key', filegate_key_json(k));
  end if;
  if k.expires_at is not null and k.expires_at <= now() then
    return jsonb_build_object('outcome', 'expired', 'key', filegate_key_json(k));
  end if;
  update filegate_api_keys
     set previous_sha256 = case when p_grace_seconds > 0 then key_sha256 end,
         previous_until = case when p_grace_seconds > 0 then now() + make_interval(secs => p_grace_seconds) end,
         key_sha256 = p_key_sha256, key_hint = p_key_hint, rotated_at = now()
   where id = p_id
  returning * into k;
  perform filegate_audit(p_audit, 'key.rotate', k.tenant_id, k.id,
                         jsonb_build_object('grace_seconds', p_grace_seconds, 'previous_key_expires_at', k.previous_until));
  perform pg_notify('filegate_keys', 'rotate:' || k.id);
  return jsonb_build_object('outcome', 'rotated', 'key', filegate_key_json(k));
end
$$;

-- last_used_at of the keys used lately, written at most once a minute per key whatever the
-- number of replicas (the minute is checked here, under the row's lock).
create or replace function touch_api_keys(p_ids text[]) returns jsonb
language sql as $$
  with t as (
    update filegate_api_keys set last_used_at = now()
     where id = any(p_ids) and (last_used_at is null or last_used_at < now() - interval '1 minute')
    returning 1
  )
  select to_jsonb(count(*)) from t
$$;

-- Whether any key was ever created: open mode ends with the first and does not come back.
create or replace function api_keys_exist() returns jsonb
language sql stable as $$
  select to_jsonb(exists (select 1 from filegate_api_keys))
$$;

-- ----------------------------------------------------------------------------------------
-- The file changes, recorded in the transaction that makes them. Each function of 0001-0007 that
-- tombstones, completes or heals a file takes p_audit (who acts) from now on; with the new argument
-- it is another function, so the old one is dropped (calls by name would be ambiguous).

drop function if exists complete_upload(uuid, uuid, text, bigint, boolean, timestamptz, text, text);
drop function if exists soft_delete_file(uuid, text);
drop function if exists sweep_expired_files(integer, integer, integer);
drop function if exists complete_heal(uuid, uuid, text, timestamptz, text);
drop function if exists reconcile_vanished_file(uuid, uuid);
drop function if exists reconcile_gone_files(text, text[], timestamptz, boolean, integer, boolean);

-- As in 0007, plus the event: `file.upload` for a new file, or `file.copy` (with the source file's
-- id) when p_audit says the upload is a copy made from a kept original.
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
  r := filegate_orphan_copy(o, p_provider_file_id, coalesce(p_bytes, o.bytes), 'upload claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r),
                            'file', case when o.id is null then null else filegate_file_json(o) end);
end
$$;

-- As in 0001, plus the event `file.delete` when this call made the tombstone (a second call
-- returns the same tombstone and records nothing).
create or replace function soft_delete_file(file_id uuid, reason text, p_audit jsonb default null) returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set status = 'deleted', deleted_at = now(), deletion_reason = reason, updated_at = now(),
         provider_deleted = (provider_file_id is null),
         provider_deleted_at = case when provider_file_id is null then now() end,
         claim_token = null, next_delete_at = null
   where id = file_id and deleted_at is null
  returning * into r;
  if not found then
    select * into r from provider_file_uploads where id = file_id;
    if not found then return null; end if;
    return filegate_file_json(r);
  end if;
  perform filegate_audit(p_audit, 'file.delete', r.tenant_id, r.id::text,
                         jsonb_build_object('reason', reason, 'provider', r.provider));
  return filegate_file_json(r);
end
$$;

-- As in 0001, plus one `file.expire` event per tombstone, actor `system` (the sweep decides, whoever
-- asked for the run; its request id, when there is one, links them to the run).
create or replace function sweep_expired_files(
  retention_days integer, p_limit integer default 100, p_lease_seconds integer default 300, p_audit jsonb default null
) returns jsonb
language sql set timezone to 'UTC' as $$
  with c as (
    select f.id from provider_file_uploads f
     where f.id in (select id from filegate_expired_candidates(retention_days, p_limit))
       and f.deleted_at is null and f.status = 'completed'
     for update skip locked
  ), u as (
    update provider_file_uploads f
       set status = 'deleted', deleted_at = now(), deletion_reason = 'expired', updated_at = now(),
           provider_deleted = (f.provider_file_id is null),
           provider_deleted_at = case when f.provider_file_id is null then now() end,
           next_delete_at = now() + make_interval(secs => p_lease_seconds)
      from c where f.id = c.id
    returning f.*
  ), a as (
    insert into audit_events (tenant_id, actor, action, target, request_id, detail)
    select u.tenant_id, 'system', 'file.expire', u.id::text, left(p_audit->>'request_id', 128),
           jsonb_build_object('provider', u.provider, 'expires_at', u.expires_at, 'last_used_at', u.last_used_at)
      from u
  )
  select coalesce(jsonb_agg(filegate_file_json(u)), '[]'::jsonb) from u
$$;

-- As in 0007, plus the event `file.heal` (the replaced provider copy in its detail).
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
  r := filegate_orphan_copy(o, p_provider_file_id, o.bytes, 'heal claim lost before completion');
  return jsonb_build_object('outcome', 'lost', 'orphan', filegate_file_json(r), 'file', filegate_file_json(o));
end
$$;

-- As in 0006, plus the event `file.delete` (reason `reconciled`) for the tombstone this call made.
create or replace function reconcile_vanished_file(p_id uuid, p_heal_token uuid, p_audit jsonb default null)
returns jsonb
language plpgsql set timezone to 'UTC' as $$
declare r provider_file_uploads;
begin
  update provider_file_uploads
     set status = 'deleted', deleted_at = now(), deletion_reason = 'reconciled', updated_at = now(),
         provider_deleted = true, provider_deleted_at = now(), next_delete_at = null,
         heal_token = null, heal_until = null
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

-- As in 0006, plus one `file.delete` event (reason `reconciled`, actor `system`) per tombstone.
create or replace function reconcile_gone_files(
  p_provider text, p_provider_file_ids text[], p_listed_before timestamptz, p_apply boolean default false,
  p_limit integer default 1000, p_keep_original_stored boolean default false, p_audit jsonb default null
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

create or replace function filegate_schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(8) $$;

-- As in 0001: on Supabase only the service role may call them.
do $$
declare f record;
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    for f in
      select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = current_schema() and p.proname in (
         'filegate_audit_append_only', 'filegate_audit', 'filegate_audit_json', 'record_audit_event',
         'list_audit_events', 'purge_audit_events', 'count_audit_purge_candidates', 'filegate_key_json',
         'create_api_key', 'get_api_key', 'find_api_key_for_auth', 'list_api_keys', 'revoke_api_key',
         'rotate_api_key', 'touch_api_keys', 'api_keys_exist', 'complete_upload', 'soft_delete_file',
         'sweep_expired_files', 'complete_heal', 'reconcile_vanished_file', 'reconcile_gone_files')
    loop
      execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
    end loop;
  end if;
end
$$;
