/**
 * Scenario 8: what a credential costs. The same 10 KB dedup hits at 32 connections against one
 * filegate process, authenticated four ways in interleaved rounds: an `API_KEYS` key (the
 * baseline), a key kept in the database (created through `POST /v1/keys`), a JWT signed ES256 by a
 * local identity provider publishing its JWKS (tests/fakes/jwks-server.ts), and a JWT signed HS256
 * with `JWT_SECRET`. All four name the same tenant, so every answer is the same dedup hit.
 */
import { randomBytes } from 'node:crypto'
import { SignJWT } from 'jose'
import { request } from 'undici'
import { startFakeIssuer } from '../../tests/fakes/jwks-server.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import type { LoadResult } from '../harness/load.js'
import { benchKeys } from '../harness/processes.js'
import { round } from '../harness/stats.js'
import { combine, describeLoad, smallUploadLoad, smallUploadRequest } from './small-uploads.js'

type Credential = 'env' | 'database' | 'jwtEs256' | 'jwtHs256'

const labels: Record<Credential, string> = {
  env: 'an API_KEYS key',
  database: 'a database key',
  jwtEs256: 'a JWT (ES256, JWKS)',
  jwtHs256: 'a JWT (HS256, JWT_SECRET)',
}

/** A key created through the keys API by the env admin key, for the bench tenant. */
async function databaseKey(baseUrl: string): Promise<string> {
  const res = await request(`${baseUrl}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${benchKeys.admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', name: 'bench access scenario' }),
  })
  const text = await res.body.text()
  if (res.statusCode !== 201) throw new Error(`POST /v1/keys: HTTP ${res.statusCode}: ${text.slice(0, 300)}`)
  return (JSON.parse(text) as { key: string }).key
}

export async function access(ctx: BenchContext): Promise<ScenarioResult> {
  const connections = envNumber('BENCH_SMALL_CONNECTIONS', 32)
  const warmupMs = envNumber('BENCH_SMALL_WARMUP_S', 1) * 1000
  const durationMs = envNumber('BENCH_SMALL_SECONDS', 3) * 1000
  const rounds = envNumber('BENCH_ACCESS_ROUNDS', envNumber('BENCH_SMALL_ROUNDS', 5))
  const issuer = await startFakeIssuer()
  const secret = randomBytes(32).toString('hex')
  const results: Record<Credential, LoadResult[]> = { env: [], database: [], jwtEs256: [], jwtHs256: [] }
  try {
    const service = await ctx.startService('8-access', {
      JWT_ISSUER: issuer.url,
      JWT_ALGORITHMS: 'ES256,HS256',
      JWT_SECRET: secret,
    })
    try {
      const claims = { sub: 'bench', iss: issuer.url, exp: Math.floor(Date.now() / 1000) + 3600 }
      const tokens: Record<Credential, string> = {
        env: benchKeys.tenant,
        database: await databaseKey(service.baseUrl),
        jwtEs256: await issuer.sign(claims, { alg: 'ES256' }),
        jwtHs256: await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
          .sign(new TextEncoder().encode(secret)),
      }
      const { body, headers } = smallUploadRequest()
      const headersOf = (c: Credential) => ({ ...headers, authorization: `Bearer ${tokens[c]}` })
      // The file is uploaded once; every credential then sees the same dedup hit (200).
      const first = await request(`${service.baseUrl}/v1/files`, { method: 'POST', headers: headersOf('env'), body })
      const text = await first.body.text()
      if (first.statusCode !== 201) throw new Error(`first upload: HTTP ${first.statusCode}: ${text.slice(0, 300)}`)
      const cpu = { service: [service.pid], postgres: 'postgres' as const, 'load generator': [process.pid] }
      const turn = (c: Credential, warmUp = false) =>
        smallUploadLoad(service.baseUrl, body, headersOf(c), cpu, {
          connections,
          warmupMs: warmUp ? 2000 : warmupMs,
          durationMs: warmUp ? 1000 : durationMs,
        })
      const kinds = Object.keys(results) as Credential[]
      for (const c of kinds) {
        const warm = await turn(c, true)
        if (warm.errors) throw new Error(`${labels[c]}: ${JSON.stringify(warm.statuses)} in the warm-up turn`)
      }
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < kinds.length; i++) {
          const c = kinds[(i + r) % kinds.length] as Credential
          const res = await turn(c)
          results[c].push(res)
          ctx.log(`  round ${r + 1} ${c}: ${round(res.rps)} req/s, p99 ${round(res.p99Ms)} ms`)
        }
      }
    } finally {
      await service.stop()
    }
  } finally {
    await issuer.close()
  }
  const env = combine(results.env)
  const figure = (c: Credential, floor: number): Figure => {
    const r = combine(results[c])
    const ratio = r.rps / env.rps
    return {
      scenario: 8,
      name: `Small uploads 10 KB, dedup hits, ${connections} connections, authenticated by ${labels[c]}`,
      value: r.rps,
      unit: 'req/s',
      baseline: { name: labels.env, value: env.rps, unit: 'req/s' },
      ratio,
      target: `ratio ≥ ${floor} (within ${Math.round((1 - floor) * 100)} %)`,
      met: ratio >= floor && r.errors === 0 && env.errors === 0,
      detail: `median of ${rounds} rounds (${r.rounds.join(', ')} req/s; ${labels.env} ${env.rounds.join(', ')}); the median round: ${describeLoad(r)}`,
    }
  }
  for (const c of Object.keys(results) as Credential[]) {
    const r = combine(results[c])
    ctx.log(`  ${labels[c]}: ${round(r.rps)} req/s (rounds ${r.rounds.join(', ')}), ${describeLoad(r)}`)
  }
  return {
    figures: [figure('database', 0.95), figure('jwtEs256', 0.9), figure('jwtHs256', 0.9)],
    notes: [
      `- Scenario 8: one service with \`API_KEYS\`, \`JWT_ISSUER\` (a local JWKS server, ES256), \`JWT_ALGORITHMS=ES256,HS256\` and \`JWT_SECRET\`; a database key created with \`POST /v1/keys\` for the same tenant; tokens with \`sub\` = that tenant, valid for an hour, signed once. The same 10 KiB dedup hit as scenario 3, ${connections} connections, a 3 s warm-up turn per credential, then ${rounds} rounds with the credentials in turn (order rotated), ${warmupMs / 1000} s warm-up + ${durationMs / 1000} s measured each; medians. ${labels.env}: rounds ${env.rounds.join(', ')} req/s.`,
    ],
  }
}
