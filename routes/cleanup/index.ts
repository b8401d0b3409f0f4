/** POST /v1/cleanup (admin): run the sweeps now; a dry run (the default) changes nothing. */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { type CleanupJob, cleanupJobs, defaultJobs, jobsByDefault } from '../../src/domain/cleanup.js'
import { acceptEmptyJson } from '../json-body.js'
import { problems } from '../schemas.js'

const Job = Type.Union(cleanupJobs.map((j) => Type.Literal(j)))

const Tally = Type.Object({
  candidates: Type.Integer(),
  deleted: Type.Integer(),
  failed: Type.Integer(),
  healed: Type.Optional(
    Type.Integer({ description: 'reconcile, originals kept: vanished provider copies uploaded again' }),
  ),
  candidate_ids: Type.Optional(
    Type.Array(Type.String(), { description: 'Dry run only: file ids (reconcile: provider file ids), at most 1000' }),
  ),
})

const JobReport = Type.Object({
  status: Type.Union([Type.Literal('completed'), Type.Literal('skipped'), Type.Literal('failed')]),
  reason: Type.Optional(Type.String()),
  providers: Type.Record(Type.String(), Tally, {
    description: 'Per provider; the originals job reports originals, staging and unknown instead',
  }),
})

const CleanupReport = Type.Object(
  {
    dry_run: Type.Boolean(),
    started_at: Type.String({ format: 'date-time' }),
    finished_at: Type.String({ format: 'date-time' }),
    jobs: Type.Record(Type.String(), JobReport),
  },
  {
    examples: [
      {
        dry_run: true,
        started_at: '2026-11-25T10:00:00.000Z',
        finished_at: '2026-11-25T10:00:00.120Z',
        jobs: {
          expired: {
            status: 'completed',
            providers: {
              kimi: { candidates: 1, deleted: 0, failed: 0, candidate_ids: ['0b6f7c1e-3f6a-4c47-9a55-3c1b1d2f8e10'] },
            },
          },
        },
      },
    ],
  },
)

const cleanupRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Every field has a default, so an empty or absent body means the defaults.
  acceptEmptyJson(app)

  app.post(
    '/v1/cleanup',
    {
      schema: {
        operationId: 'runCleanup',
        tags: ['admin'],
        summary: 'Run cleanup sweeps now (admin key). dry_run defaults to true',
        body: Type.Optional(
          Type.Object(
            {
              dry_run: Type.Boolean({ default: true }),
              jobs: Type.Optional(
                Type.Array(Job, {
                  uniqueItems: true,
                  minItems: 1,
                  description: `Default: ${defaultJobs.join(', ')}, and originals when ORIGINALS_URL is set`,
                }),
              ),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
            },
            { additionalProperties: false },
          ),
        ),
        response: { 200: CleanupReport, ...problems(400, 401, 403, 429, 503) },
      },
      config: { scope: 'admin' },
    },
    async (request) => {
      const body = request.body ?? {}
      return app.cleanup.run({
        dryRun: body.dry_run ?? true,
        jobs: (body.jobs ?? jobsByDefault(app.originals !== undefined)) as CleanupJob[],
        limit: body.limit,
      })
    },
  )
}

export default cleanupRoutes
