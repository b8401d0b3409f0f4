/**
 * The compilers of the route schemas, one pair per process: every app a process builds shares the
 * validators (Ajv) and serializers (fast-json-stringify) already compiled for the same schema.
 * The service builds one app; the tests build hundreds, and compiling the routes' schemas was most
 * of an app's start (about 150 of 230 ms of CPU).
 *
 * They are Fastify's own defaults (@fastify/ajv-compiler, @fastify/fast-json-stringify-compiler),
 * created once instead of once per app, and a compiled function is kept by what its schema says
 * (its JSON): the routes build their schema objects anew for each app, so the same object is not
 * seen twice. Fastify treats compilers given to it as custom ones: it then validates header schemas
 * as written instead of lower-casing their names, so every header schema names its headers in
 * lower case (as Node delivers them).
 */
import { AjvCompiler } from '@fastify/ajv-compiler'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import type { FastifyServerOptions } from 'fastify'

type Factory<Route, Compiled> = (externalSchemas: unknown, options: unknown) => (route: Route) => Compiled

/**
 * `factory`, each function it compiles kept by its schema's JSON, for the same shared schemas and
 * options (what the compiled function depends on besides the schema).
 */
function byJson<Route extends { schema: unknown }, Compiled>(
  factory: Factory<Route, Compiled>,
): Factory<Route, Compiled> {
  const compiled = new Map<string, Compiled>()
  return (externalSchemas, options) => {
    const compile = factory(externalSchemas, options)
    const shared = JSON.stringify([externalSchemas, options])
    return (route) => {
      const key = `${shared}\n${JSON.stringify(route.schema)}`
      let fn = compiled.get(key)
      if (fn === undefined) {
        fn = compile(route)
        compiled.set(key, fn)
      }
      return fn
    }
  }
}

type Compilers = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>

/** For Fastify's `schemaController` option. */
export const sharedSchemaController: NonNullable<FastifyServerOptions['schemaController']> = {
  compilersFactory: {
    buildValidator: byJson(AjvCompiler() as Factory<{ schema: unknown }, unknown>) as Compilers['buildValidator'],
    buildSerializer: byJson(
      SerializerSelector() as Factory<{ schema: unknown }, unknown>,
    ) as Compilers['buildSerializer'],
  },
}
