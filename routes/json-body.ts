/**
 * For routes whose JSON body is optional: an empty body with `Content-Type: application/json`
 * (`curl -X POST -H 'content-type: application/json'` sends none) means `{}`, and no body at all
 * means the same. Non-empty bodies keep Fastify's own parser, with its prototype-poisoning checks.
 * Call it inside the routes' own plugin: the parser is scoped to it.
 */
import type { FastifyInstance } from 'fastify'

export function acceptEmptyJson(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString()
    if (text === '') done(null, {})
    else json(request, text, done)
  })
  app.addHook('preValidation', (request, _reply, done) => {
    request.body ??= {}
    done()
  })
}
