#!/usr/bin/env node
/** The `filegate` executable (package.json "bin"): `npx filegate --help`. */
import { runCli } from './program.js'

const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
})
process.exitCode = code
// A provider or database socket left open must not keep a finished command alive.
setTimeout(() => process.exit(code), 2000).unref()
