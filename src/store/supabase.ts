/**
 * Supabase transport: supabase-js `.rpc()` against PostgREST, with the service role key.
 * PostgREST cannot run DDL, so migrations are applied by `supabase db push` or, when
 * DATABASE_URL is also given, by filegate's own runner over that connection.
 */
import { createClient } from '@supabase/supabase-js'
import { type CallArgs, databaseUnavailable, type StorePort, storeError } from './port.js'

const requestTimeoutMs = 10_000

export function createSupabaseStore(url: string, serviceRoleKey: string): StorePort {
  // A hung PostgREST must not hang a request: every call gets its own deadline.
  const timedFetch: typeof fetch = (input, init) =>
    fetch(input, {
      ...init,
      signal: init?.signal
        ? AbortSignal.any([init.signal, AbortSignal.timeout(requestTimeoutMs)])
        : AbortSignal.timeout(requestTimeoutMs),
    })
  const client = createClient(url, serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { fetch: timedFetch, headers: { 'x-client-info': 'filegate' } },
  })

  return {
    transport: 'supabase',
    async call<T>(fn: string, args: CallArgs = {}): Promise<T> {
      const body = Object.fromEntries(
        Object.entries(args)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
      )
      const { data, error, status } = await client.rpc(fn, body)
      if (error) {
        // status 0: fetch failed (network, timeout); 5xx: PostgREST cannot reach Postgres (PGRST000-003).
        if (status === 0 || status >= 500 || !status) throw databaseUnavailable(error)
        const err = new Error(`rpc ${fn} failed: ${error.code} ${error.message}`) as Error & { code?: string }
        err.code = error.code
        throw storeError(err)
      }
      return (data ?? null) as T
    },
    async close() {},
  }
}
