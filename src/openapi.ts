/** The static parts of the OpenAPI 3.1 document; paths come from the route schemas. */
export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'filegate',
    version: '0.1.0',
    description:
      'Files gateway for AI providers (Moonshot Kimi, Zhipu GLM, OpenAI-compatible): provider limits, SHA-256 ' +
      'deduplication, retention and orphan cleanup, metrics. Errors are RFC 9457 problem+json.',
    license: { name: 'MIT', identifier: 'MIT' },
  },
  servers: [{ url: 'http://127.0.0.1:8080' }],
  tags: [
    { name: 'files', description: 'Upload, list, read and delete files' },
    { name: 'limits', description: 'Provider limits and usage' },
    { name: 'admin', description: 'Admin-only operations' },
    { name: 'probes', description: 'Health, readiness and metrics' },
  ],
  components: {
    securitySchemes: {
      bearerAuth: { type: 'http' as const, scheme: 'bearer', description: 'An API key from API_KEYS' },
    },
  },
}
