/**
 * The compilers of the route schemas, one pair per process: every app a process builds shares the
 * validators (Ajv) and serializers (fast-json-stringify) already compiled for the same schema.
 * The service builds one app; the tests build hundreds, and compiling the routes' schemas was most
 * of an app's start (about 130 of 230 ms of CPU).
 *
 * They are Fastify's own defaults (@fastify/ajv-compiler, @fastify/fast-json-stringify-compiler),
 * created once instead of once per app. The Ajv compiler already keeps one Ajv per set of shared
 * schemas and options, and Ajv caches what it compiled by schema; a serializer is kept here by its
 * schema, per set of shared schemas and options. Fastify treats compilers given to it as custom
 * ones: it then validates header schemas as written instead of lower-casing their names, so every
 * header schema names its headers in lower case (as Node delivers them).
 */
import { AjvCompiler } from '@fastify/ajv-compiler'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import type { FastifyServerOptions } from 'fastify'

type SerializerFactory = ReturnType<typeof SerializerSelector>
type Serializer = (data: unknown) => string

/** fast-json-stringify's factory, each compiled serializer kept by its schema for the same shared schemas. */
function cachedSerializers(factory: SerializerFactory): SerializerFactory {
  const byShared = new Map<string, WeakMap<object, Serializer>>()
  return (externalSchemas, options) => {
    const compile = factory(externalSchemas, options)
    const key = JSON.stringify([externalSchemas, options])
    const known = byShared.get(key) ?? new WeakMap<object, Serializer>()
    byShared.set(key, known)
    return (route) => {
      const schema = route.schema as object
      let serializer = known.get(schema)
      if (!serializer) {
        serializer = compile(route) as Serializer
        known.set(schema, serializer)
      }
      return serializer
    }
  }
}

/** For Fastify's `schemaController` option. */
export const sharedSchemaController: NonNullable<FastifyServerOptions['schemaController']> = {
  compilersFactory: {
    buildValidator: AjvCompiler(),
    buildSerializer: cachedSerializers(SerializerSelector()),
  },
}
