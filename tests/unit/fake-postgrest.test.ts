/**
 * The fake PostgREST (tests/fakes/postgrest.ts) is only useful if supabase-js
 * cannot tell it from the real thing, so every case goes through
 * `createClient(...).rpc(...)` (raw fetch only where the client cannot send
 * the request) and asserts the shapes PostgREST documents:
 * https://docs.postgrest.org/en/v12/references/api/functions.html and
 * https://docs.postgrest.org/en/v12/references/errors.html
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { createClient, type RealtimeClientOptions } from '@supabase/supabase-js'
import postgres from 'postgres'
import { WebSocket } from 'undici'
import { type FakePostgrest, startFakePostgrest, statusForSqlState } from '../fakes/postgrest.js'
import { freePort, requirePostgres } from '../helper.js'

const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres'
const KEY = 'service-role-key-for-tests'
const clientOptions = {
  auth: { persistSession: false, autoRefreshToken: false },
  // supabase-js 2.109 builds its realtime client eagerly and throws on Node 20,
  // which has no global WebSocket; undici's is never opened here (no channels).
  realtime: { transport: WebSocket as unknown as NonNullable<RealtimeClientOptions['transport']> },
}
const quiet = { onnotice: () => {} }

function assertErrorShape(error: unknown): void {
  assert.ok(error !== null && typeof error === 'object', 'expected an error object')
  assert.deepEqual(Object.keys(error).sort(), ['code', 'details', 'hint', 'message'])
}

const SCHEMA_SQL = `
  create table notes (id serial primary key, body text not null unique);
  create table children (id serial primary key, note_id integer not null references notes (id));
  create type pair as (x integer, y text);

  create function add_them(a integer, b integer) returns integer
    language sql immutable as $$ select a + b $$;
  create function big_number() returns bigint language sql as $$ select 5000000000::bigint $$;
  create function fixed_time() returns timestamptz
    language sql as $$ select '2024-01-02 03:04:05+00'::timestamptz $$;
  create function half(n numeric) returns numeric language sql as $$ select n / 2 $$;
  create function same_json(v jsonb) returns jsonb language sql as $$ select v $$;
  create function tag_json(payload jsonb) returns jsonb
    language sql as $$ select payload || '{"tagged": true}'::jsonb $$;
  create function sum_array(xs integer[]) returns integer
    language sql as $$ select coalesce(sum(x), 0)::integer from unnest(xs) as x $$;
  create function sum_variadic(variadic nums integer[]) returns integer
    language sql as $$ select sum(x)::integer from unnest(nums) as x $$;
  create function is_null(v text) returns boolean language sql as $$ select v is null $$;
  create function items(n integer) returns table (id integer, label text)
    language sql as $$ select i, 'item ' || i from generate_series(1, n) as i $$;
  create function squares(n integer) returns setof integer
    language sql as $$ select i * i from generate_series(1, n) as i $$;
  create function make_pair(x integer, y text) returns pair language sql as $$ select row(x, y)::pair $$;
  create function out_params(n integer, out doubled integer, out label text)
    language sql as $$ select n * 2, 'n=' || n $$;
  create function add_note(p_body text) returns notes
    language sql as $$ insert into notes (body) values (p_body) returning * $$;
  create function touch_note(p_body text) returns void
    language sql as $$ insert into notes (body) values (p_body) $$;
  create function note_count() returns bigint language sql stable as $$ select count(*) from notes $$;
  create function add_child(p_note_id integer) returns void
    language sql as $$ insert into children (note_id) values (p_note_id) $$;
  create function fail_with(msg text) returns integer language plpgsql as $$
    begin
      raise exception using errcode = 'P0001', message = msg, detail = 'the detail', hint = 'the hint';
    end $$;
  create function fail_plain() returns integer language plpgsql as $$
    begin raise exception 'plain failure'; end $$;
  create function raise_code(code text) returns void language plpgsql as $$
    begin raise exception 'raised %', code using errcode = code; end $$;
  create function greet(name text, greeting text default 'hello') returns text
    language sql as $$ select greeting || ', ' || name $$;
  create function pick(a integer) returns text language sql as $$ select 'one int' $$;
  create function pick(a integer, b integer) returns text language sql as $$ select 'two ints' $$;
  create function pick(s text) returns text language sql as $$ select 'text' $$;
  create function amb(a integer) returns text language sql as $$ select 'a' $$;
  create function amb(a integer, b integer default 0) returns text language sql as $$ select 'ab' $$;
  create function sparse() returns table (id integer, note text)
    language sql as $$ values (1, null), (2, 'b') $$;
  create function no_args() returns text language sql as $$ select 'nothing' $$;
  create function whole_body(json) returns json language sql as $$ select $1 $$;

  create schema api;
  create function api.ping() returns text language sql as $$ select 'pong' $$;
`

test('statusForSqlState follows the PostgREST status table', () => {
  const table: Array<[string, number]> = [
    ['08006', 503],
    ['09000', 500],
    ['0L000', 403],
    ['0P000', 403],
    ['23503', 409],
    ['23505', 409],
    ['25006', 405],
    ['25001', 500],
    ['28000', 403],
    ['2D000', 500],
    ['38000', 500],
    ['39000', 500],
    ['3B000', 500],
    ['40001', 500],
    ['53400', 500],
    ['53100', 503],
    ['54000', 500],
    ['55000', 500],
    ['57014', 500],
    ['58000', 500],
    ['F0000', 500],
    ['HV000', 500],
    ['P0001', 400],
    ['P0002', 500],
    ['XX000', 500],
    ['42883', 404],
    ['42P01', 404],
    ['42P17', 500],
    ['42501', 403],
    ['22P02', 400],
    ['22023', 400],
    ['23502', 400],
  ]
  for (const [code, status] of table) assert.equal(statusForSqlState(code), status, code)
  assert.equal(statusForSqlState('42501', false), 401)
})

test('fake PostgREST answers protocol errors before reaching the database', async (t) => {
  // Nothing listens on this port: these cases must not need Postgres.
  const fake = await startFakePostgrest({
    databaseUrl: `postgres://postgres@127.0.0.1:${await freePort()}/postgres`,
    serviceRoleKey: KEY,
  })
  t.after(() => fake.close())
  const rpcUrl = `${fake.url}/rest/v1/rpc/add_them`

  await t.test('a wrong key is 401 PGRST301', async () => {
    const client = createClient(fake.url, 'not-the-key', clientOptions)
    const { data, error, status } = await client.rpc('add_them', { a: 1, b: 2 })
    assert.equal(status, 401)
    assert.equal(data, null)
    assertErrorShape(error)
    assert.equal(error?.code, 'PGRST301')
    assert.equal(fake.calls.length, 0, 'rejected requests are not recorded')
  })

  await t.test('no credentials at all is 401 PGRST302', async () => {
    const res = await fetch(rpcUrl, { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } })
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Bearer')
    assert.deepEqual(await res.json(), {
      code: 'PGRST302',
      message: 'Anonymous access is disabled',
      details: null,
      hint: null,
    })
  })

  await t.test('malformed JSON is 400 PGRST102', async () => {
    const res = await fetch(rpcUrl, {
      method: 'POST',
      body: '{"a": 1,',
      headers: { apikey: KEY, Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    })
    assert.equal(res.status, 400)
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8')
    assert.deepEqual(await res.json(), {
      code: 'PGRST102',
      message: 'Empty or invalid json',
      details: null,
      hint: null,
    })
  })

  await t.test('a schema that is not exposed is 406 PGRST106', async () => {
    const client = createClient(fake.url, KEY, { ...clientOptions, db: { schema: 'private' } })
    const { error, status } = await client.rpc('add_them', { a: 1, b: 2 })
    assert.equal(status, 406)
    assertErrorShape(error)
    assert.equal(error?.code, 'PGRST106')
    assert.equal(error?.message, 'Invalid schema: private')
    assert.equal(error?.hint, 'Only the following schemas are exposed: public')
  })

  await t.test('an unreachable database is 503 PGRST000', async () => {
    const client = createClient(fake.url, KEY, clientOptions)
    const { error, status } = await client.rpc('add_them', { a: 1, b: 2 })
    assert.equal(status, 503)
    assertErrorShape(error)
    assert.equal(error?.code, 'PGRST000')
    assert.match(String(error?.details), /ECONNREFUSED/)
    assert.deepEqual(fake.calls.at(-1), { fn: 'add_them', args: { a: 1, b: 2 } })
  })

  await t.test('the API root answers 200 {}', async () => {
    const res = await fetch(`${fake.url}/rest/v1/`, { headers: { apikey: KEY } })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), {})
  })
})

test('fake PostgREST serves RPC over Postgres to supabase-js', async (t) => {
  if (!(await requirePostgres(t))) return
  const dbName = `fp_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(ADMIN_URL, { max: 1, ...quiet })
  await admin.unsafe(`create database ${dbName}`)
  const databaseUrl = `postgres://postgres@127.0.0.1:5432/${dbName}`
  const db = postgres(databaseUrl, { max: 1, ...quiet })
  let fake: FakePostgrest | undefined
  let apiFake: FakePostgrest | undefined
  try {
    await db.unsafe(SCHEMA_SQL).simple()
    fake = await startFakePostgrest({ databaseUrl, serviceRoleKey: KEY })
    const supabase = createClient(fake.url, KEY, clientOptions)
    const calls = fake.calls
    const url = fake.url

    await t.test('scalar integer', async () => {
      const { data, error, status } = await supabase.rpc('add_them', { a: 2, b: 3 })
      assert.equal(error, null)
      assert.equal(status, 200)
      assert.equal(data, 5)
      assert.deepEqual(calls.at(-1), { fn: 'add_them', args: { a: 2, b: 3 } })
    })

    await t.test('scalars serialise as PostgREST does', async () => {
      assert.equal((await supabase.rpc('big_number')).data, 5000000000)
      assert.equal((await supabase.rpc('fixed_time')).data, '2024-01-02T03:04:05+00:00')
      assert.equal((await supabase.rpc('half', { n: 3 })).data, 1.5)
      assert.equal((await supabase.rpc('no_args')).data, 'nothing')
    })

    await t.test('success responses are JSON with a Content-Range', async () => {
      const res = await fetch(`${url}/rest/v1/rpc/add_them`, {
        method: 'POST',
        body: JSON.stringify({ a: 1, b: 1 }),
        headers: { apikey: KEY, Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
      })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8')
      assert.equal(res.headers.get('content-range'), '0-0/*')
      assert.equal(await res.text(), '2')
    })

    await t.test('json and jsonb values pass through as JSON', async () => {
      const payload = { nested: { list: [1, 'two', null, { deep: true }] }, text: 'x' }
      assert.deepEqual((await supabase.rpc('tag_json', { payload })).data, { ...payload, tagged: true })
      assert.deepEqual((await supabase.rpc('same_json', { v: [1, { a: 'b' }] })).data, [1, { a: 'b' }])
      assert.equal((await supabase.rpc('same_json', { v: 'just a string' })).data, 'just a string')
      assert.equal((await supabase.rpc('same_json', { v: 42 })).data, 42)
      const nothing = await supabase.rpc('same_json', { v: null })
      assert.equal(nothing.error, null)
      assert.equal(nothing.data, null)
    })

    await t.test('arrays, variadics and nulls', async () => {
      assert.equal((await supabase.rpc('sum_array', { xs: [1, 2, 3] })).data, 6)
      assert.equal((await supabase.rpc('sum_variadic', { nums: [4, 5] })).data, 9)
      assert.equal((await supabase.rpc('is_null', { v: null })).data, true)
      assert.equal((await supabase.rpc('is_null', { v: 'x' })).data, false)
    })

    await t.test('SETOF and TABLE functions return arrays', async () => {
      assert.deepEqual((await supabase.rpc('items', { n: 2 })).data, [
        { id: 1, label: 'item 1' },
        { id: 2, label: 'item 2' },
      ])
      assert.deepEqual((await supabase.rpc('items', { n: 0 })).data, [])
      assert.deepEqual((await supabase.rpc('squares', { n: 3 })).data, [1, 4, 9])
      const counted = await supabase.rpc('items', { n: 3 }, { count: 'exact' })
      assert.equal(counted.count, 3)
      const head = await supabase.rpc('items', { n: 4 }, { head: true, count: 'exact' })
      assert.equal(head.error, null)
      assert.equal(head.data, null)
      assert.equal(head.count, 4)
    })

    await t.test('composite results are objects', async () => {
      assert.deepEqual((await supabase.rpc('make_pair', { x: 1, y: 'one' })).data, { x: 1, y: 'one' })
      assert.deepEqual((await supabase.rpc('out_params', { n: 4 })).data, { doubled: 8, label: 'n=4' })
      assert.deepEqual((await supabase.rpc('add_note', { p_body: 'first' })).data, { id: 1, body: 'first' })
    })

    await t.test('a void function answers 204 No Content', async () => {
      const { data, error, status } = await supabase.rpc('touch_note', { p_body: 'second' })
      assert.equal(error, null)
      assert.equal(status, 204)
      assert.equal(data, null)
      assert.equal((await supabase.rpc('note_count')).data, 2)
      const res = await fetch(`${url}/rest/v1/rpc/touch_note`, {
        method: 'POST',
        body: JSON.stringify({ p_body: 'third' }),
        headers: { apikey: KEY, 'Content-Type': 'application/json' },
      })
      assert.equal(res.status, 204)
      assert.equal(res.headers.get('content-type'), null)
      assert.equal(await res.text(), '')
    })

    await t.test('unique and foreign key violations are 409', async () => {
      const dup = await supabase.rpc('add_note', { p_body: 'first' })
      assert.equal(dup.status, 409)
      assert.equal(dup.data, null)
      assertErrorShape(dup.error)
      assert.equal(dup.error?.code, '23505')
      assert.equal(dup.error?.message, 'duplicate key value violates unique constraint "notes_body_key"')
      assert.equal(dup.error?.details, 'Key (body)=(first) already exists.')
      assert.equal(dup.error?.hint, null)
      const fk = await supabase.rpc('add_child', { p_note_id: 999 })
      assert.equal(fk.status, 409)
      assert.equal(fk.error?.code, '23503')
    })

    await t.test('raise exception is 400 with code, message, details and hint', async () => {
      const full = await supabase.rpc('fail_with', { msg: 'not allowed' })
      assert.equal(full.status, 400)
      assert.deepEqual(full.error, {
        code: 'P0001',
        message: 'not allowed',
        details: 'the detail',
        hint: 'the hint',
      })
      const plain = await supabase.rpc('fail_plain')
      assert.equal(plain.status, 400)
      assert.deepEqual(plain.error, { code: 'P0001', message: 'plain failure', details: null, hint: null })
    })

    await t.test('raised SQLSTATEs map to the documented statuses', async () => {
      const cases: Array<[string, number]> = [
        ['22023', 400],
        ['42501', 403],
        ['42883', 404],
        ['40001', 500],
        ['57014', 500],
        ['53300', 503],
        ['P0002', 500],
      ]
      for (const [code, status] of cases) {
        const { error, status: got } = await supabase.rpc('raise_code', { code })
        assert.equal(got, status, code)
        assert.equal(error?.code, code)
        assert.equal(error?.message, `raised ${code}`)
      }
    })

    await t.test('a value of the wrong type is 400 22P02', async () => {
      const { error, status } = await supabase.rpc('add_them', { a: 'abc', b: 1 })
      assert.equal(status, 400)
      assert.equal(error?.code, '22P02')
      assert.equal(error?.message, 'invalid input syntax for type integer: "abc"')
    })

    await t.test('arguments with defaults may be omitted', async () => {
      assert.equal((await supabase.rpc('greet', { name: 'ann' })).data, 'hello, ann')
      assert.equal((await supabase.rpc('greet', { name: 'ann', greeting: 'hi' })).data, 'hi, ann')
      const missing = await supabase.rpc('greet', { greeting: 'hi' })
      assert.equal(missing.status, 404)
      assert.equal(missing.error?.code, 'PGRST202')
    })

    await t.test('overloads are resolved by argument names', async () => {
      assert.equal((await supabase.rpc('pick', { a: 1 })).data, 'one int')
      assert.equal((await supabase.rpc('pick', { a: 1, b: 2 })).data, 'two ints')
      assert.equal((await supabase.rpc('pick', { s: 'x' })).data, 'text')
      assert.equal((await supabase.rpc('amb', { a: 1, b: 2 })).data, 'ab')
      const ambiguous = await supabase.rpc('amb', { a: 1 })
      assert.equal(ambiguous.status, 300)
      assertErrorShape(ambiguous.error)
      assert.equal(ambiguous.error?.code, 'PGRST203')
      assert.equal(
        ambiguous.error?.message,
        'Could not choose the best candidate function between: public.amb(a => integer), public.amb(a => integer, b => integer)',
      )
    })

    await t.test('an unknown function or argument set is 404 PGRST202', async () => {
      const unknown = await supabase.rpc('nope', { y: 1, x: 2 })
      assert.equal(unknown.status, 404)
      assert.deepEqual(unknown.error, {
        code: 'PGRST202',
        message: 'Could not find the function public.nope(x, y) in the schema cache',
        details:
          'Searched for the function public.nope with parameters x, y or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
        hint: null,
      })
      const wrongArgs = await supabase.rpc('add_them', { a: 1, c: 2 })
      assert.equal(wrongArgs.status, 404)
      assert.equal(wrongArgs.error?.code, 'PGRST202')
      assert.equal(wrongArgs.error?.hint, 'Perhaps you meant to call the function public.add_them(a, b)')
      const none = await supabase.rpc('nope')
      assert.equal(
        none.error?.message,
        'Could not find the function public.nope without parameters in the schema cache',
      )
    })

    await t.test('a single unnamed json parameter receives the whole body', async () => {
      assert.deepEqual((await supabase.rpc('whole_body', { any: 'thing', n: 1 })).data, { any: 'thing', n: 1 })
    })

    await t.test('GET calls run read-only', async () => {
      assert.equal((await supabase.rpc('add_them', { a: 1, b: 2 }, { get: true })).data, 3)
      assert.equal((await supabase.rpc('sum_array', { xs: [1, 2] }, { get: true })).data, 3)
      assert.deepEqual(calls.at(-1), { fn: 'sum_array', args: { xs: '{1,2}' } })
      const write = await supabase.rpc('touch_note', { p_body: 'via get' }, { get: true })
      assert.equal(write.status, 405)
      assert.equal(write.error?.code, '25006')
    })

    await t.test('vnd.pgrst.object asks for exactly one row', async () => {
      const one = await supabase.rpc('items', { n: 1 }).single()
      assert.equal(one.error, null)
      assert.deepEqual(one.data, { id: 1, label: 'item 1' })
      const two = await supabase.rpc('items', { n: 2 }).single()
      assert.equal(two.status, 406)
      assertErrorShape(two.error)
      assert.equal(two.error?.code, 'PGRST116')
      assert.equal(two.error?.details, 'The result contains 2 rows')
      const none = await supabase.rpc('items', { n: 0 }).single()
      assert.equal(none.error?.code, 'PGRST116')
      assert.equal((await supabase.rpc('add_them', { a: 1, b: 1 }).single()).data, 2)
    })

    await t.test('nulls=stripped and unsupported media types', async () => {
      assert.deepEqual((await supabase.rpc('sparse').stripNulls()).data, [{ id: 1 }, { id: 2, note: 'b' }])
      assert.deepEqual((await supabase.rpc('make_pair', { x: 1, y: null }).single().stripNulls()).data, { x: 1 })
      const csv = await supabase.rpc('sparse').csv()
      assert.equal(csv.status, 406)
      assert.equal(csv.error?.code, 'PGRST107')
    })

    await t.test('a wrong key is 401 even with a database behind', async () => {
      const before = calls.length
      const client = createClient(url, 'wrong', clientOptions)
      const { error, status } = await client.rpc('add_them', { a: 1, b: 2 })
      assert.equal(status, 401)
      assert.equal(error?.code, 'PGRST301')
      assert.equal(calls.length, before)
    })

    await t.test('another exposed schema is served through its profile', async () => {
      apiFake = await startFakePostgrest({ databaseUrl, serviceRoleKey: KEY, schema: 'api' })
      const api = createClient(apiFake.url, KEY, { ...clientOptions, db: { schema: 'api' } })
      assert.equal((await api.rpc('ping')).data, 'pong')
      const wrongProfile = await createClient(apiFake.url, KEY, clientOptions).rpc('ping')
      assert.equal(wrongProfile.status, 406)
      assert.equal(wrongProfile.error?.code, 'PGRST106')
    })
  } finally {
    await apiFake?.close()
    await fake?.close()
    await db.end({ timeout: 1 })
    await admin.unsafe(`drop database if exists ${dbName} with (force)`)
    await admin.end({ timeout: 1 })
  }
})
