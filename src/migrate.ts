/** `npm run db:migrate`: applies pending migrations to the configured database and exits (`filegate migrate`). */
import { runCli } from './cli/program.js'

process.exitCode = await runCli(['migrate'], {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
})
