// Preloaded into each filegate service the bench starts (`--import`): the service is the leader of a
// process group of its own, so a signal to the runner's terminal does not reach it; when the runner
// goes away (its IPC channel closes, whatever killed it), the service is sent SIGTERM and shuts down
// as in production. The channel is unref'd: it never keeps the service alive by itself.
process.channel?.unref()
process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'))
